#!/usr/bin/env bash
# imap: IMAP reads and writes against a 4 KiB-message INBOX, load from bench/imap_load.py (one
# process per session, pinned to the load cores) for both servers:
#   ours: the mail role of `hostrole-agent up` (user u), whose APPEND fsyncs the message, the
#         folder and its dovecot-uidlist before OK;
#   peer: Dovecot from Debian (imap only, its own config and Maildir under the temp dir,
#         passwd-file login, mail_fsync at its default `optimized`).
# Both servers pinned to the server cores. Each INBOX is first filled with FILL messages by
# APPEND (not timed). Figures: operations/s with SESSIONS sessions for DURATION seconds,
#   fetch: UID FETCH BODY.PEEK[] of random messages;
#   mix:   4 such FETCHes then 1 APPEND of 4 KiB, repeated.
set -euo pipefail
export BENCH_NAME=imap
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FILL=${FILL:-$(quick 100 1000)}
SESSIONS=${SESSIONS:-8}
DURATION=${DURATION:-$(quick 3 15)}
LOAD=$BENCH_DIR/imap_load.py

start_ours() {
  local port=$1 admin
  admin=$(free_port)
  { bench_users_secret; echo ---; mail_host bench-imap bench.lan 0 0 "$port" "allowPlaintextAuth: true"; } >"$BENCH_TMP/mail.yaml"
  start_agent_up "$BENCH_TMP/mail.yaml" "$admin" "$BENCH_TMP/ours" "$SERVER_CPUS" "$BENCH_TMP/agent.log"
}

# start_dovecot PORT: a Dovecot with its own base dir, config, users and Maildirs in the temp dir.
start_dovecot() {
  local port=$1 d=$BENCH_TMP/dovecot
  mkdir -p "$d/run" "$d/state" "$d/mail"
  chown -R nobody: "$d/mail"
  echo "u:{PLAIN}bench::::::" >"$d/passwd"
  cat >"$d/dovecot.conf" <<CONF
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = $d/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$d/mail/%u
}
mail_location = maildir:~/Maildir
first_valid_uid = 1
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
  taskset -c "$SERVER_CPUS" dovecot -c "$d/dovecot.conf" -F >"$d/stdout.log" 2>&1 &
  track $!
  wait_port "$port" 20 || { cat "$d/dovecot.log" "$d/stdout.log" >&2 || true; die "dovecot not listening on $port"; }
}

load() {
  taskset -c "$LOAD_CPUS" python3 "$LOAD" 127.0.0.1 "$1" u bench "$2" "$SESSIONS" "$DURATION"
}

main() {
  local ours_port dc_port mode ours dc
  need_pkgs dovecot-imapd python3
  bins
  tmpdir
  ours_port=$(free_port)
  dc_port=$(free_port)
  start_ours "$ours_port"
  start_dovecot "$dc_port"
  load "$ours_port" "fill:$FILL"
  load "$dc_port" "fill:$FILL"
  for mode in fetch mix; do
    ours=$(load "$ours_port" "$mode")
    dc=$(load "$dc_port" "$mode")
    row "$mode ops/s" "imap_load.py $mode: $SESSIONS sessions, ${DURATION}s, INBOX of $FILL × 4 KiB" "$ours" "$dc" ">1"
  done
}

main "$@"
