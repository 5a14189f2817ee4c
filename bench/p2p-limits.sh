#!/usr/bin/env bash
# p2p-limits: does serving the network slow a peer's own work, and do the limits help?
# One peer S downloads a SIZE_MB file that only its source T has, three times:
#   idle:       nobody asks S for anything;
#   seeding:    PEERS peers fetch another SIZE_MB file that only S has, from S, meanwhile;
#   limited:    the same, with S's `limits` (UPLOAD_RATE bytes/s, SLOTS upload slots).
# Measured each time: seconds until S holds its file, and the p99 latency of S's UI
# (`/api/status`, wrk -c2 on the load core) over the first UI_SECONDS of the download.
# The figures are ratios to the idle run (the "peer" column), all in the same run. S and its
# source T share the server core in every run, so what changes between runs is only S's
# serving; the other peers and wrk share the load core (so the peers' trading among themselves
# does not take S's core). Decentralized network,
# loopback, one tokio worker per agent.
set -euo pipefail
export BENCH_NAME=p2p-limits
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE_MB=${SIZE_MB:-$(quick 32 256)}
PEERS=${PEERS:-$(quick 3 8)}
UPLOAD_RATE=${UPLOAD_RATE:-$((32 << 20))}
SLOTS=${SLOTS:-4}
UI_SECONDS=${UI_SECONDS:-$(quick 2 5)}
TIMEOUT=${P2P_TIMEOUT:-$(quick 120 900)}

# agent NAME PORT UI_PORT ROOT SEEDS EXTRA: writes NAME.yaml (an AgentConfig with a peer) and
# starts it, S and T on the server core and the others on the load core; sets LAST_PID.
agent() {
  local admin
  port admin
  cat >"$BENCH_TMP/$1.yaml" <<YAML
hostRole: $1
bind: 127.0.0.1
adminPort: $admin
peer:
  network: bench
  port: $2
  uiPort: $3
  root: $4
  secretFile: $BENCH_TMP/secret
  heartbeatSeconds: 1
  seeds: [$5]
$6
YAML
  local cpus=$LOAD_CPUS
  [[ $1 == s || $1 == t ]] && cpus=$SERVER_CPUS
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$cpus" \
    "$AGENT" run --config "$BENCH_TMP/$1.yaml" >"$BENCH_TMP/$1.log" 2>&1 &
  LAST_PID=$!
  track "$LAST_PID"
  wait_http "http://127.0.0.1:$admin/readyz" 20 "$LAST_PID" ||
    { tail -n 20 "$BENCH_TMP/$1.log" >&2; die "$1 did not get ready"; }
}

# hash_of UI_PORT NAME: the content hash S's search finds for NAME (waits for it).
hash_of() {
  local i h
  for ((i = 0; i < 300; i++)); do
    h=$(curl -fsS "http://127.0.0.1:$1/api/search?q=$2" 2>/dev/null |
      python3 -c 'import json,sys; print(next((h["hash"] for h in json.load(sys.stdin) if h["name"] == sys.argv[1]), ""))' "$2")
    [[ -n $h ]] && { echo "$h"; return 0; }
    sleep 0.1
  done
  die "$2 not found from port $1"
}

# run MODE(idle|seeding|limited): sets SECS_<MODE> and P99_<MODE>.
run() {
  local mode=$1 sport tport sui tui pui extra="" k t0 pids=() want out hash ports=() seeds wrk_pid p
  rm -rf "$BENCH_TMP"/{s,t,p*} "$BENCH_TMP"/*.yaml
  mkdir -p "$BENCH_TMP/s" "$BENCH_TMP/t"
  ln "$BENCH_TMP/own.bin" "$BENCH_TMP/t/own.bin"
  ln "$BENCH_TMP/served.bin" "$BENCH_TMP/s/served.bin"
  port sport
  port tport
  port sui
  port tui
  for ((k = 0; k < PEERS; k++)); do
    port p
    ports+=("$p")
  done
  [[ $mode == limited ]] &&
    extra="  uploadBytesPerSecond: $UPLOAD_RATE
  uploadSlots: $SLOTS"
  seeds=$(printf '"127.0.0.1:%s",' "$tport" "${ports[@]}")
  agent t "$tport" "$tui" "$BENCH_TMP/t" "\"127.0.0.1:$sport\"" ""
  pids+=("$LAST_PID")
  agent s "$sport" "$sui" "$BENCH_TMP/s" "${seeds%,}" "$extra"
  pids+=("$LAST_PID")
  hash=$(hash_of "$sui" own.bin)
  if [[ $mode != idle ]]; then
    for ((k = 0; k < PEERS; k++)); do
      mkdir -p "$BENCH_TMP/p$k"
      port pui
      agent "p$k" "${ports[$k]}" "$pui" "$BENCH_TMP/p$k" "\"127.0.0.1:$sport\"" \
        "  fetch: [served.bin]"
      pids+=("$LAST_PID")
    done
    sleep 2 # the peers are fetching from S
  fi
  want=$((SIZE_MB * 1048576))
  taskset -c "$LOAD_CPUS" wrk -t1 -c2 -d"${UI_SECONDS}s" --latency \
    "http://127.0.0.1:$sui/api/status" >"$BENCH_TMP/wrk-$mode.txt" 2>&1 &
  wrk_pid=$!
  track "$wrk_pid"
  t0=$(now_ns)
  curl -fsS -o /dev/null -H 'X-Requested-With: bench' -H 'Content-Type: application/json' \
    --data-binary "{\"hash\":\"$hash\"}" "http://127.0.0.1:$sui/api/downloads"
  for ((k = 0; k < TIMEOUT * 10; k++)); do
    [[ $(stat -c %s "$BENCH_TMP/s/own.bin" 2>/dev/null || echo 0) == "$want" ]] && break
    sleep 0.1
  done
  if [[ $(stat -c %s "$BENCH_TMP/s/own.bin" 2>/dev/null || echo 0) == "$want" ]]; then
    printf -v "SECS_${mode^^}" '%s' "$(secs_since "$t0")"
  else
    printf -v "SECS_${mode^^}" timeout
  fi
  wait "$wrk_pid" || true
  out=$(cat "$BENCH_TMP/wrk-$mode.txt")
  printf -v "P99_${mode^^}" '%s' "$(awk '$1 == "99%" { print $2 }' <<<"$out" | to_ms)"
  [[ $(sha256sum <"$BENCH_TMP/s/own.bin" | cut -d' ' -f1) == "$OWN_SHA" ]] ||
    log "warning: S's copy ($mode) does not match"
  log "$mode: served $(curl -fsS "http://127.0.0.1:$(awk '/^adminPort/ { print $2 }' "$BENCH_TMP/s.yaml")/metrics" |
    awk '/^hostrole_peer_served_bytes_total / { printf "%.0f MiB", $2 / 1048576 }') meanwhile"
  for k in "${pids[@]}"; do stop_pid "$k"; done
}

main() {
  local desc lim
  need_pkgs wrk procps python3
  bins
  tmpdir
  log "making two ${SIZE_MB} MiB files"
  head -c $((SIZE_MB * 1048576)) /dev/urandom >"$BENCH_TMP/own.bin"
  head -c $((SIZE_MB * 1048576)) /dev/urandom >"$BENCH_TMP/served.bin"
  OWN_SHA=$(sha256sum <"$BENCH_TMP/own.bin" | cut -d' ' -f1)
  head -c 32 /dev/urandom | base64 >"$BENCH_TMP/secret"
  run idle
  run seeding
  run limited
  desc="S fetches ${SIZE_MB} MiB from T; $PEERS peers fetch ${SIZE_MB} MiB from S; peer column: S idle"
  lim="uploadBytesPerSecond $((UPLOAD_RATE >> 20))Mi, uploadSlots $SLOTS"
  row "own download s while seeding, no limits" "$desc" "$SECS_SEEDING" "$SECS_IDLE" "<1"
  row "own download s while seeding, $lim" "$desc" "$SECS_LIMITED" "$SECS_IDLE" "<1"
  row "UI p99 ms while seeding, no limits" "wrk -t1 -c2 -d${UI_SECONDS}s /api/status; $desc" "$P99_SEEDING" "$P99_IDLE" "<1"
  row "UI p99 ms while seeding, $lim" "wrk -t1 -c2 -d${UI_SECONDS}s /api/status; $desc" "$P99_LIMITED" "$P99_IDLE" "<1"
}

main "$@"
