#!/usr/bin/env bash
# mail: SMTP delivery of N messages of 4 KiB over 16 concurrent sessions, load from Postfix's
# smtp-source for both servers (pinned to the load cores):
#   ours: the mail role of `hostrole-agent up` (domain bench.lan, user u), which answers 250
#         only after the message is fsynced into u's Maildir;
#   peer: Postfix (its own config directory and queue under the temp dir, loopback only, nothing
#         relayed: default_transport = error) delivering bench.lan into a Maildir with its
#         virtual(8) agent (Maildir delivery with fsync, no system user needed).
# Both servers pinned to the server cores. Measured: msgs/s = N / seconds from the first
# connection until N messages are in the Maildir's new/ (for ours that is when smtp-source ends;
# Postfix queues first and delivers after, so its clock runs until the last delivery).
set -euo pipefail
export BENCH_NAME=mail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${MESSAGES:-$(quick 500 10000)}
SESSIONS=${SESSIONS:-16}
DELIVERY_TIMEOUT=${DELIVERY_TIMEOUT:-900}

start_ours() {
  local port=$1 admin
  admin=$(free_port)
  { bench_users_secret; echo ---; mail_host bench-mail bench.lan "$port" 0 0; } >"$BENCH_TMP/mail.yaml"
  start_agent_up "$BENCH_TMP/mail.yaml" "$admin" "$BENCH_TMP/ours" "$SERVER_CPUS" "$BENCH_TMP/agent.log"
}

# start_postfix PORT: writes main.cf/master.cf into $BENCH_TMP/postfix and starts the master.
start_postfix() {
  local port=$1 conf=$BENCH_TMP/postfix uid gid
  uid=$(id -u nobody)
  gid=$(id -g nobody)
  mkdir -p "$conf" "$BENCH_TMP/pf-queue" "$BENCH_TMP/pf-data" "$BENCH_TMP/vmail/u"
  chown -R nobody: "$BENCH_TMP/vmail"
  chown postfix: "$BENCH_TMP/pf-data"
  cat >"$conf/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $BENCH_TMP/pf-queue
data_directory = $BENCH_TMP/pf-data
maillog_file = $BENCH_TMP/postfix.log
myhostname = bench.invalid
mydomain = bench.invalid
myorigin = bench.invalid
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
default_transport = error:benchmark host relays nothing
relay_transport = error:benchmark host relays nothing
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
biff = no
virtual_mailbox_domains = bench.lan
virtual_mailbox_base = $BENCH_TMP/vmail
virtual_mailbox_maps = inline:{ u@bench.lan=u/ }
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
CONF
  # master.cf: Debian's, without chroot (the queue is in the temp dir), smtpd on 127.0.0.1:PORT.
  awk -v port="$port" '
    /^#/ || /^[ \t]/ || NF < 8 { print; next }
    $1 == "smtp" && $2 == "inet" { $1 = "127.0.0.1:" port }
    { $5 = "n"; print }' /etc/postfix/master.cf >"$conf/master.cf"
  taskset -c "$SERVER_CPUS" postfix -c "$conf" start >&2 2>&1 ||
    { tail -n 20 "$BENCH_TMP/postfix.log" >&2 || true; die "postfix did not start"; }
  on_exit_do "postfix -c '$conf' stop"
  track "$(tr -d ' \n' <"$BENCH_TMP/pf-queue/pid/master.pid")" # and wait until the master is gone
  wait_port "$port" 20 || die "postfix smtpd not listening on $port"
}

# count DIR: files in DIR (a Maildir's new/).
count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# send PORT NEWDIR: runs smtp-source, waits until N messages are in NEWDIR; prints msgs/s.
send() {
  local port=$1 newdir=$2 t0 i
  t0=$(now_ns)
  taskset -c "$LOAD_CPUS" timeout "$DELIVERY_TIMEOUT" /usr/sbin/smtp-source \
    -s "$SESSIONS" -m "$N" -l 4096 -f a@bench.lan -t u@bench.lan "127.0.0.1:$port" >&2
  log "smtp-source done after $(secs_since "$t0") s; in $newdir: $(count "$newdir")"
  for ((i = 0; i < DELIVERY_TIMEOUT * 20; i++)); do
    (($(count "$newdir") >= N)) && break
    sleep 0.05
  done
  awk -v n="$N" -v s="$(secs_since "$t0")" 'BEGIN { printf "%.1f", n / s }'
}

main() {
  local ours_port pf_port ours pf ours_new cmd
  need_pkgs postfix procps
  [[ -x /usr/sbin/smtp-source ]] || die "/usr/sbin/smtp-source missing (package postfix)"
  bins
  tmpdir
  ours_port=$(free_port)
  pf_port=$(free_port)
  start_ours "$ours_port"
  start_postfix "$pf_port"
  # The agent creates every user's Maildir when it starts.
  ours_new=$(find "$BENCH_TMP/ours" -type d -path '*/u/new' | head -n 1)
  [[ -n $ours_new ]] || die "no Maildir of u under $BENCH_TMP/ours"
  ours=$(send "$ours_port" "$ours_new")
  pf=$(send "$pf_port" "$BENCH_TMP/vmail/u/new")
  echo "ours: $(count "$ours_new") messages in $ours_new; postfix: $(count "$BENCH_TMP/vmail/u/new") in vmail/u/new (expected $N each)"
  cmd="smtp-source -s $SESSIONS -m $N -l 4096 -f a@bench.lan -t u@bench.lan 127.0.0.1:PORT"
  row "msgs/s delivered to Maildir" "$cmd" "$ours" "$pf" ">1"
}

main "$@"
