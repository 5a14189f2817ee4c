#!/usr/bin/env bash
# outbound: N messages of 4 KiB submitted over SESSIONS concurrent sessions (bench/outbound_load.py)
# and relayed to one sink, a receiving mail role (domain sink.lan) that fsyncs each message into
# its Maildir before 250; the sink runs on the load cores:
#   ours: a mail role (domain a.lan) taking the messages on its submission port (AUTH) into its
#         outbound queue (fsynced before 250) and delivering them to the sink by the route the
#         translator gives it (the other HostRole of the manifest), 4 transactions at a time;
#   peer: Postfix (own config directory and queue under the temp dir, loopback only) taking them
#         on its smtpd from mynetworks and relaying them with smtp(8) to the same sink
#         (transport_maps, no DNS).
# Both senders pinned to the server cores. Measured: msgs/s = N / seconds from the first
# connection until the sink holds all N messages (both queue first and deliver after).
set -euo pipefail
export BENCH_NAME=outbound
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${MESSAGES:-$(quick 200 5000)}
SESSIONS=${SESSIONS:-8}
DELIVERY_TIMEOUT=${DELIVERY_TIMEOUT:-900}
LOAD=$BENCH_DIR/outbound_load.py

# manifest SINK_SMTP A_SUBMISSION: the sender a and the sink as two HostRoles of one manifest.
manifest() {
  {
    bench_users_secret
    echo ---
    mail_host a a.lan 0 "$2" 0 "outbound: {retryInterval: 1s}"
    echo ---
    mail_host sink sink.lan "$1" 0 0
  } >"$BENCH_TMP/outbound.yaml"
}

# start_up NAME ADMIN CPUS: `hostrole-agent up --name NAME` of the manifest (one tokio worker).
start_up() {
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$3" \
    "$AGENT" up "$BENCH_TMP/outbound.yaml" --name "$1" --admin-port "$2" \
    --data-dir "$BENCH_TMP/$1" >"$BENCH_TMP/$1.log" 2>&1 &
  track "$!"
  wait_http "http://127.0.0.1:$2/readyz" 30 "$!" ||
    { tail -n 30 "$BENCH_TMP/$1.log" >&2; die "agent $1 not ready (log above)"; }
}

# start_postfix PORT SINK_PORT: Postfix relaying sink.lan to 127.0.0.1:SINK_PORT.
start_postfix() {
  local port=$1 sink=$2 conf=$BENCH_TMP/postfix
  mkdir -p "$conf" "$BENCH_TMP/pf-queue" "$BENCH_TMP/pf-data"
  chown postfix: "$BENCH_TMP/pf-data"
  cat >"$conf/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $BENCH_TMP/pf-queue
data_directory = $BENCH_TMP/pf-data
maillog_file = $BENCH_TMP/postfix.log
maillog_file_prefixes = $BENCH_TMP
myhostname = bench.invalid
mydomain = bench.invalid
myorigin = bench.invalid
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
relay_domains = sink.lan
transport_maps = inline:{ sink.lan=smtp:[127.0.0.1]:$sink }
default_transport = error:benchmark host relays nothing else
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtp_tls_security_level = none
biff = no
CONF
  # master.cf: Debian's, without chroot (the queue is in the temp dir), smtpd on 127.0.0.1:PORT.
  awk -v port="$port" '
    /^#/ || /^[ \t]/ || NF < 8 { print; next }
    $1 == "smtp" && $2 == "inet" { $1 = "127.0.0.1:" port }
    { $5 = "n"; print }' /etc/postfix/master.cf >"$conf/master.cf"
  taskset -c "$SERVER_CPUS" postfix -c "$conf" start >&2 2>&1 ||
    { tail -n 20 "$BENCH_TMP/postfix.log" >&2 || true; die "postfix did not start"; }
  on_exit_do "postfix -c '$conf' stop"
  track "$(tr -d ' \n' <"$BENCH_TMP/pf-queue/pid/master.pid")"
  wait_port "$port" 20 || die "postfix smtpd not listening on $port"
}

count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# send PORT TARGET [USER PASSWORD]: submits N messages, waits until the sink holds TARGET
# messages; prints msgs/s.
send() {
  local port=$1 target=$2 t0 i took
  shift 2
  t0=$(now_ns)
  took=$(taskset -c "$LOAD_CPUS" timeout "$DELIVERY_TIMEOUT" python3 "$LOAD" "$port" "$N" \
    "$SESSIONS" 4096 u@a.lan u@sink.lan "$@")
  log "submitted in $took s; at the sink: $(count "$SINK_NEW")"
  for ((i = 0; i < DELIVERY_TIMEOUT * 20; i++)); do
    (($(count "$SINK_NEW") >= target)) && break
    sleep 0.05
  done
  awk -v n="$N" -v s="$(secs_since "$t0")" 'BEGIN { printf "%.1f", n / s }'
}

main() {
  local sink_port sub_port pf_port ours pf cmd
  need_pkgs postfix procps python3
  bins
  tmpdir
  sink_port=$(free_port)
  sub_port=$(free_port)
  pf_port=$(free_port)
  manifest "$sink_port" "$sub_port"
  start_up sink "$(free_port)" "$LOAD_CPUS"
  start_up a "$(free_port)" "$SERVER_CPUS"
  start_postfix "$pf_port" "$sink_port"
  SINK_NEW=$(find "$BENCH_TMP/sink" -type d -path '*/u/new' | head -n 1)
  [[ -n $SINK_NEW ]] || die "no Maildir of u under $BENCH_TMP/sink"
  ours=$(send "$sub_port" "$N" u bench)
  pf=$(send "$pf_port" "$((2 * N))")
  echo "at the sink: $(count "$SINK_NEW") messages (expected $((2 * N)))"
  cmd="outbound_load.py 127.0.0.1:PORT $N messages, $SESSIONS sessions, 4096 B, to u@sink.lan"
  row "msgs/s submitted and relayed to a sink" "$cmd" "$ours" "$pf" ">1"
}

main "$@"
