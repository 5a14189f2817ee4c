#!/usr/bin/env bash
# index: how fast a hybrid network recovers from an index restart. The index keeps its peer list
# in memory only (docs/decisions.md), so after a restart it knows nobody until each peer's next
# heartbeat registers it again.
# Setup: one index and three peers (hybrid, heartbeatSeconds 1): A and B share the same file,
# C only searches. Each run kills the index (SIGKILL) and starts it again on the same port.
# Measured per run: seconds from the restarted index answering /readyz until a search on C lists
# both A and B again (polled every 50 ms). Figures: median and worst of RUNS runs.
# Floor (peer column): one heartbeat interval, the longest a peer may wait before it registers.
# (This was a `< 2.5 s` assertion inside agent/tests/it/p2p.rs; timings belong here, not in tests.)
set -euo pipefail
export BENCH_NAME=index
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-$(quick 2 10)}
HEARTBEAT=1
CPUS=${BENCH_P2P_CPUS:-$ALL_CPUS}

# start NAME EXTRA_YAML: `hostrole-agent run` with an AgentConfig NAME.yaml; sets LAST_PID and
# waits for /readyz.
start() {
  local admin
  admin=$(free_port)
  cat >"$BENCH_TMP/$1.yaml" <<YAML
hostRole: $1
bind: 127.0.0.1
adminPort: $admin
$2
YAML
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$CPUS" \
    "$AGENT" run --config "$BENCH_TMP/$1.yaml" >>"$BENCH_TMP/$1.log" 2>&1 &
  LAST_PID=$!
  track "$LAST_PID"
  wait_http "http://127.0.0.1:$admin/readyz" 30 "$LAST_PID" ||
    { tail -n 20 "$BENCH_TMP/$1.log" >&2; die "$1 did not get ready (log above)"; }
}

# restart_index: starts the index again from its config; sets LAST_PID.
restart_index() {
  local admin
  admin=$(awk '/^adminPort/ { print $2 }' "$BENCH_TMP/index.yaml")
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$CPUS" \
    "$AGENT" run --config "$BENCH_TMP/index.yaml" >>"$BENCH_TMP/index.log" 2>&1 &
  LAST_PID=$!
  track "$LAST_PID"
  wait_http "http://127.0.0.1:$admin/readyz" 30 "$LAST_PID" ||
    { tail -n 20 "$BENCH_TMP/index.log" >&2; die "the index did not get ready again"; }
}

peer_yaml() { # peer_yaml ROOT UI_PORT
  cat <<YAML
peer:
  network: bench
  port: $(free_port)
  uiPort: $2
  root: $1
  secretFile: $BENCH_TMP/networks/bench
  indexUrl: http://127.0.0.1:$IPORT
  heartbeatSeconds: $HEARTBEAT
YAML
}

# both_listed: a search on C lists A and B as holders of the file.
both_listed() {
  local out
  out=$(curl -s --max-time 2 "http://127.0.0.1:$C_UI/api/search?q=big" || true)
  [[ $out == *"\"$A_ID\""* && $out == *"\"$B_ID\""* ]]
}

main() {
  local k ui t0 took=() index_pid a_ui b_ui
  need_pkgs procps
  bins
  tmpdir
  mkdir -p "$BENCH_TMP/networks" "$BENCH_TMP/a" "$BENCH_TMP/b" "$BENCH_TMP/c"
  head -c 32 /dev/urandom | base64 >"$BENCH_TMP/networks/bench"
  head -c $((4 << 20)) /dev/urandom >"$BENCH_TMP/a/big.bin"
  cp "$BENCH_TMP/a/big.bin" "$BENCH_TMP/b/big.bin"
  IPORT=$(free_port)
  start index "index: {port: $IPORT, ttlSeconds: 30, networksDir: $BENCH_TMP/networks}"
  index_pid=$LAST_PID
  a_ui=$(free_port) b_ui=$(free_port) C_UI=$(free_port)
  start a "$(peer_yaml "$BENCH_TMP/a" "$a_ui")"
  start b "$(peer_yaml "$BENCH_TMP/b" "$b_ui")"
  start c "$(peer_yaml "$BENCH_TMP/c" "$C_UI")"
  A_ID=$(curl -s "http://127.0.0.1:$a_ui/api/status" | sed -n 's/.*"peerId":"\([^"]*\)".*/\1/p')
  B_ID=$(curl -s "http://127.0.0.1:$b_ui/api/status" | sed -n 's/.*"peerId":"\([^"]*\)".*/\1/p')
  [[ -n $A_ID && -n $B_ID ]] || die "no peer ids"
  for ((k = 0; k < 600; k++)); do both_listed && break; sleep 0.05; done
  both_listed || die "C never saw A and B at the index"

  for ((k = 0; k < RUNS; k++)); do
    kill -KILL "$index_pid"
    wait "$index_pid" 2>/dev/null || true
    restart_index
    index_pid=$LAST_PID
    t0=$(now_ns)
    ui=0
    while ! both_listed; do
      sleep 0.05
      ui=$((ui + 1))
      ((ui < 600)) || die "run $k: lookups did not recover within 30 s"
    done
    took+=("$(secs_since "$t0")")
    log "run $((k + 1))/$RUNS: ${took[-1]} s"
  done
  local median worst
  median=$(printf '%s\n' "${took[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
  worst=$(printf '%s\n' "${took[@]}" | sort -n | tail -n 1)
  local desc="index SIGKILLed and restarted, 2 holders + 1 searcher, heartbeatSeconds $HEARTBEAT, $RUNS runs"
  row "s from index ready to lookups back, median" "$desc" "$median" "$HEARTBEAT" "<1"
  row "s from index ready to lookups back, worst" "$desc" "$worst" "$HEARTBEAT" "<1"
}

main "$@"
