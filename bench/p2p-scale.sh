#!/usr/bin/env bash
# p2p-scale: how a peer network grows. For each N in SCALE_PEERS (8 32 128): one seeder and N
# peers on loopback (each peer on its own 127.0.1.x address), all on all cores, one tokio
# worker each; the N peers fetch one SIZE_MB file at once (`fetch:` in their configuration).
#   decentralized (seeds + gossip): seconds until all N hold the file; then, with nothing to do,
#     the bytes each peer writes to its sockets in IDLE_SECONDS (gossip and keep-alives; the
#     wchar of /proc/PID/io less what it wrote before, which is sockets and a few log lines)
#     per peer per minute;
#   hybrid (an index): seconds until all N hold the file, and the index's CPU seconds for it
#     (registrations, heartbeats every second, lookups).
# The "peer" column is the figure at 8 peers, to read the curve: linear would be N/8 for the
# time (the seeder's upload is the bound until peers trade), 1 for gossip per peer.
set -euo pipefail
export BENCH_NAME=p2p-scale
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE_MB=${SIZE_MB:-$(quick 8 64)}
SCALE_PEERS=${SCALE_PEERS:-$(quick "4 8" "8 32 128")}
IDLE_SECONDS=${IDLE_SECONDS:-$(quick 10 60)}
TIMEOUT=${P2P_TIMEOUT:-$(quick 120 1800)}

# start NAME YAML_BODY [IP]: an agent from an AgentConfig, bound to IP (127.0.0.1); sets
# LAST_PID and LAST_ADMIN.
start() {
  local admin
  port admin
  printf 'hostRole: %s\nbind: %s\nadminPort: %s\n%s\n' "$1" "${3:-127.0.0.1}" "$admin" "$2" >"$BENCH_TMP/$1.yaml"
  RUST_LOG=warn TOKIO_WORKER_THREADS=1 "$AGENT" run --config "$BENCH_TMP/$1.yaml" \
    >"$BENCH_TMP/$1.log" 2>&1 &
  LAST_PID=$!
  LAST_ADMIN=$admin
  track "$LAST_PID"
}

# peer_body ROOT PORT UI_PORT DISCOVERY [fetch] (the caller takes the ports: a port taken in
# this $(…) subshell could not be marked, and 128 peers would collide).
peer_body() {
  printf 'peer:\n  network: bench\n  port: %s\n  uiPort: %s\n  root: %s\n  secretFile: %s\n  heartbeatSeconds: 1\n%s\n%s' \
    "$2" "$3" "$1" "$BENCH_TMP/secret" "$4" "${5:+  fetch: [big.bin]}"
}

# peer_ip K: peer K's own loopback address, so that the index and the other peers see N hosts
# (the index admits at most 64 peers per client address; all on 127.0.0.1, hybrid at 128 never
# completed).
peer_ip() {
  printf '127.0.1.%d' $(($1 + 1))
}

# run MODE N: sets SECS, and IDLE_BYTES (decentralized) or INDEX_CPU (hybrid).
run() {
  local mode=$1 n=$2 k sport sui iport discovery seeds pids=() admins=() ports=() uis=() p t0 want done_n i a
  local index_pid=""
  rm -rf "$BENCH_TMP"/peer* "$BENCH_TMP"/seedshare "$BENCH_TMP"/networks
  mkdir -p "$BENCH_TMP/seedshare"
  ln "$BENCH_TMP/big.bin" "$BENCH_TMP/seedshare/big.bin"
  port sport
  port sui
  for ((k = 0; k < n; k++)); do
    port p
    ports+=("$p")
    port p
    uis+=("$p")
  done
  if [[ $mode == hybrid ]]; then
    port iport
    mkdir -p "$BENCH_TMP/networks"
    cp "$BENCH_TMP/secret" "$BENCH_TMP/networks/bench"
    start index "index: {port: $iport, ttlSeconds: 30, networksDir: $BENCH_TMP/networks}"
    index_pid=$LAST_PID
    wait_http "http://127.0.0.1:$LAST_ADMIN/readyz" 20 "$LAST_PID" || die "index not ready"
    discovery="  indexUrl: http://127.0.0.1:$iport"
    seeds=$discovery
  else
    discovery="  seeds: [\"127.0.0.1:$sport\"]"
    seeds=""
    for ((k = 0; k < n; k++)); do
      seeds+="\"$(peer_ip "$k"):${ports[$k]}\","
    done
    seeds="  seeds: [${seeds%,}]"
  fi
  start seed "$(peer_body "$BENCH_TMP/seedshare" "$sport" "$sui" "$seeds")"
  pids+=("$LAST_PID")
  wait_http "http://127.0.0.1:$LAST_ADMIN/readyz" 20 "$LAST_PID" || die "seeder not ready"
  sleep 2
  t0=$(now_ns)
  for ((k = 0; k < n; k++)); do
    mkdir -p "$BENCH_TMP/peer$k"
    start "peer$k" "$(peer_body "$BENCH_TMP/peer$k" "${ports[$k]}" "${uis[$k]}" "$discovery" fetch)" "$(peer_ip "$k")"
    pids+=("$LAST_PID")
    admins+=("$LAST_ADMIN")
  done
  want=$((SIZE_MB * 1048576))
  SECS=timeout
  for ((i = 0; i < TIMEOUT * 4; i++)); do
    done_n=0
    for ((k = 0; k < n; k++)); do
      [[ $(stat -c %s "$BENCH_TMP/peer$k/big.bin" 2>/dev/null || echo 0) == "$want" ]] && done_n=$((done_n + 1))
    done
    ((done_n == n)) && { SECS=$(secs_since "$t0"); break; }
    if ((i % 20 == 0)); then
      for ((k = 0; k < ${#pids[@]}; k++)); do
        kill -0 "${pids[$k]}" 2>/dev/null || die "an agent exited: $(tail -n 3 "$BENCH_TMP"/*.log | grep -m1 -i error)"
      done
    fi
    sleep 0.25
  done
  log "$mode, $n peers: $SECS s"
  for ((k = 0; k < n; k += n / 4 > 0 ? n / 4 : 1)); do
    [[ $(sha256sum <"$BENCH_TMP/peer$k/big.bin" | cut -d' ' -f1) == "$SHA" ]] ||
      log "warning: peer$k's copy does not match"
  done
  if [[ $mode == hybrid ]]; then
    INDEX_CPU=$(cpu_seconds "$index_pid")
    stop_pid "$index_pid"
  else
    local before=() total=0
    for ((k = 1; k < ${#pids[@]}; k++)); do
      before+=("$(awk '/^wchar:/ { print $2 }' "/proc/${pids[$k]}/io")")
    done
    sleep "$IDLE_SECONDS"
    for ((k = 1; k < ${#pids[@]}; k++)); do
      a=$(awk '/^wchar:/ { print $2 }' "/proc/${pids[$k]}/io")
      total=$((total + a - before[k - 1]))
    done
    IDLE_BYTES=$(awk -v t="$total" -v n="$n" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.0f", t / n * 60 / s }')
  fi
  stop_all "${pids[@]}"
  rm -rf "$BENCH_TMP"/peer*
}

main() {
  local n first_secs="" first_idle="" first_hsecs="" first_cpu="" desc
  need_pkgs procps python3
  bins
  tmpdir
  log "making a ${SIZE_MB} MiB file"
  head -c $((SIZE_MB * 1048576)) /dev/urandom >"$BENCH_TMP/big.bin"
  SHA=$(sha256sum <"$BENCH_TMP/big.bin" | cut -d' ' -f1)
  head -c 32 /dev/urandom | base64 >"$BENCH_TMP/secret"
  for n in $SCALE_PEERS; do
    desc="1 seeder -> $n peers, ${SIZE_MB} MiB; peer column: the first size's figure"
    run decentralized "$n"
    : "${first_secs:=$SECS}" "${first_idle:=$IDLE_BYTES}"
    row "decentralized s until $n peers hold the file" "$desc" "$SECS" "$first_secs" "-"
    row "decentralized gossip bytes written per peer per minute, idle, $n peers" "/proc/PID/io wchar over ${IDLE_SECONDS}s; $desc" "$IDLE_BYTES" "$first_idle" "-"
    run hybrid "$n"
    : "${first_hsecs:=$SECS}" "${first_cpu:=$INDEX_CPU}"
    row "hybrid s until $n peers hold the file" "$desc" "$SECS" "$first_hsecs" "-"
    row "hybrid index CPU s for the transfer, $n peers" "/proc/PID/stat utime+stime; $desc" "$INDEX_CPU" "$first_cpu" "-"
  done
}

main "$@"
