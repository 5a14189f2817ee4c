#!/usr/bin/env bash
# p2p: one file (SIZE_MB) from 1 seeder to PEERS peers, all on loopback, all processes on the same
# cores (every peer is both server and client, so no server/load split here).
# Measured: seconds from starting the PEERS downloaders until every one holds the whole file
# (checked afterwards with sha256):
#   aria2:  aria2c (BitTorrent; DHT, LPD and PEX off, private torrent made with mktorrent,
#           1 MiB pieces) with a local opentracker; completion = aria2's
#           --on-bt-download-complete hook;
#   ours:   `hostrole-agent run --config` per peer, hybrid (an index agent + peers with
#           indexUrl) and decentralized (peers with seeds: [seeder]); completion = the file in
#           the peer's share with the right size. An agent built without the peer role (one
#           that rejects `peer:`) prints "ours: skipped (agent without the peer role)".
#   floor:  PEERS simultaneous socket copies (socat, 1 MiB buffers) of the file from the
#           seeder's disk into each peer's directory: the PEERS x SIZE bytes every peer must
#           receive, crossing loopback once, with no protocol and no hashing, on the same cores.
set -euo pipefail
export BENCH_NAME=p2p
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE_MB=${SIZE_MB:-$(quick 64 1024)}
PEERS=${PEERS:-$(quick 3 8)}
TIMEOUT=${P2P_TIMEOUT:-$(quick 120 1800)}
CPUS=${BENCH_P2P_CPUS:-$ALL_CPUS}

# wait_files PATTERN_PREFIX: until every $BENCH_TMP/<prefix>N/big.bin (N < PEERS) has SIZE bytes.
wait_files() {
  local prefix=$1 want=$((SIZE_MB * 1048576)) n i k
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    n=0
    for ((k = 0; k < PEERS; k++)); do
      [[ $(stat -c %s "$BENCH_TMP/$prefix$k/big.bin" 2>/dev/null || echo 0) == "$want" ]] && n=$((n + 1))
    done
    ((n == PEERS)) && return 0
    sleep 0.1
  done
  return 1
}

# verify PREFIX: every peer's copy has the seeder's sha256; prints how many do.
verify() {
  local k ok=0
  for ((k = 0; k < PEERS; k++)); do
    [[ $(sha256sum <"$BENCH_TMP/$1$k/big.bin" | cut -d' ' -f1) == "$SHA" ]] && ok=$((ok + 1))
  done
  echo "$1: $ok/$PEERS copies with the right sha256"
}

# ---------------------------------------------------------------- floor
floor() {
  local k port t0 pids=()
  for ((k = 0; k < PEERS; k++)); do
    mkdir -p "$BENCH_TMP/floor$k"
    port=$(free_port)
    taskset -c "$CPUS" socat -b 1048576 -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" \
      "CREATE:$BENCH_TMP/floor$k/big.bin" &
    pids+=($!)
    track "$!"
    wait_port "$port" 10
    FLOOR_PORTS[k]=$port
  done
  t0=$(now_ns)
  for ((k = 0; k < PEERS; k++)); do
    taskset -c "$CPUS" socat -b 1048576 -u "OPEN:$BENCH_TMP/seed/big.bin" "TCP:127.0.0.1:${FLOOR_PORTS[k]}" &
    track "$!"
  done
  for k in "${pids[@]}"; do wait "$k"; done
  FLOOR=$(secs_since "$t0")
  verify floor >&2
  rm -rf "$BENCH_TMP"/floor*
}

# ---------------------------------------------------------------- aria2
aria2_common() {
  printf '%s\n' --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
    --enable-peer-exchange=false --disable-ipv6=true --interface=127.0.0.1 \
    --seed-ratio=0.0 --seed-time="$((TIMEOUT / 60 + 1))" --summary-interval=0 \
    --console-log-level=warn --file-allocation=none --bt-max-peers=0 --quiet=true
}

aria2() {
  local tport sport k t0 opts
  need_pkgs aria2 opentracker mktorrent
  mapfile -t opts < <(aria2_common)
  tport=$(free_port)
  mktorrent -p -l 20 -a "http://127.0.0.1:$tport/announce" -o "$BENCH_TMP/big.torrent" \
    "$BENCH_TMP/seed/big.bin" >/dev/null
  # Debian's opentracker serves whitelisted torrents only; it chroots into -d, so the
  # whitelist's path is taken inside that directory.
  mkdir -p "$BENCH_TMP/tracker"
  aria2c -S "$BENCH_TMP/big.torrent" | awk '/^Info Hash:/ { print $3 }' >"$BENCH_TMP/tracker/whitelist"
  chmod 644 "$BENCH_TMP/tracker/whitelist"
  taskset -c "$CPUS" opentracker -i 127.0.0.1 -p "$tport" -P "$tport" -d "$BENCH_TMP/tracker" \
    -w /whitelist >"$BENCH_TMP/tracker.log" 2>&1 &
  track "$!"
  wait_port "$tport" 10 || { cat "$BENCH_TMP/tracker.log" >&2; die "opentracker did not start"; }
  # shellcheck disable=SC2016 # expanded by the hook, not here
  printf '#!/bin/sh\ndate +%%s%%N >"$(dirname "$3")/.done"\n' >"$BENCH_TMP/hook.sh"
  chmod +x "$BENCH_TMP/hook.sh"
  # The seeder checks its copy, then announces; the downloaders start once it listens.
  sport=$(free_port)
  taskset -c "$CPUS" aria2c "${opts[@]}" --dir="$BENCH_TMP/seed" --check-integrity=true \
    --bt-seed-unverified=false --listen-port="$sport" "$BENCH_TMP/big.torrent" \
    >"$BENCH_TMP/aria2-seed.log" 2>&1 &
  track "$!"
  wait_port "$sport" 300 || { cat "$BENCH_TMP/aria2-seed.log" >&2; die "the aria2 seeder did not start"; }
  sleep 1 # its first announce
  t0=$(now_ns)
  for ((k = 0; k < PEERS; k++)); do
    mkdir -p "$BENCH_TMP/aria$k"
    taskset -c "$CPUS" aria2c "${opts[@]}" --dir="$BENCH_TMP/aria$k" \
      --listen-port="$(free_port)" --on-bt-download-complete="$BENCH_TMP/hook.sh" \
      "$BENCH_TMP/big.torrent" >"$BENCH_TMP/aria2-$k.log" 2>&1 &
    track "$!"
  done
  for ((k = 0; k < TIMEOUT * 10; k++)); do
    (($(find "$BENCH_TMP" -maxdepth 2 -path "$BENCH_TMP/aria*/.done" | wc -l) >= PEERS)) && break
    sleep 0.1
  done
  ARIA=$(find "$BENCH_TMP" -maxdepth 2 -path "$BENCH_TMP/aria*/.done" -exec cat {} + |
    sort -n | tail -n 1 | awk -v a="$t0" '{ printf "%.3f", ($1 - a) / 1e9 }')
  (($(find "$BENCH_TMP" -maxdepth 2 -path "$BENCH_TMP/aria*/.done" | wc -l) >= PEERS)) ||
    { ARIA=timeout; log "aria2: not all peers completed within ${TIMEOUT}s"; }
  verify aria >&2
}

# ---------------------------------------------------------------- ours (needs the peer role)
# agent_cfg NAME ADMIN EXTRA_YAML: writes $BENCH_TMP/NAME.yaml (an AgentConfig).
agent_cfg() {
  cat >"$BENCH_TMP/$1.yaml" <<YAML
hostRole: $1
bind: 127.0.0.1
adminPort: $2
$3
YAML
}

# run_agent NAME: starts `hostrole-agent run --config NAME.yaml`, sets LAST_PID.
run_agent() {
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$CPUS" \
    "$AGENT" run --config "$BENCH_TMP/$1.yaml" >"$BENCH_TMP/$1.log" 2>&1 &
  LAST_PID=$!
  track "$LAST_PID"
}

# peer_yaml ROOT PORT DISCOVERY [fetch]: the peer: block.
peer_yaml() {
  cat <<YAML
peer:
  network: bench
  port: $2
  uiPort: $(free_port)
  root: $1
  secretFile: $BENCH_TMP/secret
  heartbeatSeconds: 1
$3
${4:+  fetch: [big.bin]}
YAML
}

# ours MODE(hybrid|decentralized): sets OURS_<MODE> (seconds, "skipped" or "timeout").
ours() {
  local mode=$1 admin sport discovery k t0 pids=() var
  var=OURS_${mode^^}
  admin=$(free_port)
  sport=$(free_port)
  rm -rf "$BENCH_TMP"/ours*
  if [[ $mode == hybrid ]]; then
    local iport
    iport=$(free_port)
    mkdir -p "$BENCH_TMP/networks"
    cp "$BENCH_TMP/secret" "$BENCH_TMP/networks/bench"
    agent_cfg bench-index "$(free_port)" "index: {port: $iport, ttlSeconds: 30, networksDir: $BENCH_TMP/networks}"
    run_agent bench-index
    pids+=("$LAST_PID")
    if ! wait_http "http://127.0.0.1:$(awk '/^adminPort/ { print $2 }' "$BENCH_TMP/bench-index.yaml")/readyz" 20 "$LAST_PID"; then
      skip_or_die bench-index "$var"
      return 0
    fi
    discovery="  indexUrl: http://127.0.0.1:$iport"
  else
    discovery="  seeds: [\"127.0.0.1:$sport\"]"
  fi
  # The peers' ports are known in advance: a decentralized seeder starts from them (a peer with
  # no index, DNS name or seed has no way to find anyone), the peers start from the seeder.
  local peer_ports=() seed_discovery=$discovery seeds
  for ((k = 0; k < PEERS; k++)); do peer_ports+=("$(free_port)"); done
  if [[ $mode != hybrid ]]; then
    seeds=$(printf '"127.0.0.1:%s",' "${peer_ports[@]}")
    seed_discovery="  seeds: [${seeds%,}]"
  fi
  mkdir -p "$BENCH_TMP/ours-seed"
  ln "$BENCH_TMP/seed/big.bin" "$BENCH_TMP/ours-seed/big.bin"
  agent_cfg bench-seed "$admin" "$(peer_yaml "$BENCH_TMP/ours-seed" "$sport" "$seed_discovery")"
  run_agent bench-seed
  pids+=("$LAST_PID")
  if ! wait_http "http://127.0.0.1:$admin/readyz" 20 "$LAST_PID"; then
    skip_or_die bench-seed "$var"
    return 0
  fi
  sleep 2 # one heartbeat: the seeder is listed before the downloaders ask
  t0=$(now_ns)
  for ((k = 0; k < PEERS; k++)); do
    mkdir -p "$BENCH_TMP/ours$k"
    agent_cfg "bench-peer$k" "$(free_port)" \
      "$(peer_yaml "$BENCH_TMP/ours$k" "${peer_ports[$k]}" "$discovery" fetch)"
    run_agent "bench-peer$k"
    pids+=("$LAST_PID")
  done
  if wait_files ours; then
    printf -v "$var" '%s' "$(secs_since "$t0")"
    verify ours >&2
  else
    printf -v "$var" timeout
    log "ours ($mode): not all peers completed within ${TIMEOUT}s"
  fi
  for k in "${pids[@]}"; do stop_pid "$k"; done
}

# skip_or_die NAME VAR: the agent did not get ready; an agent without the role is a skip.
skip_or_die() {
  if grep -Eq "unknown field .(peer|index)." "$BENCH_TMP/$1.log"; then
    echo "ours: skipped (agent without the peer role)"
    printf -v "$2" skipped
  else
    tail -n 20 "$BENCH_TMP/$1.log" >&2
    printf -v "$2" failed
    log "ours: $1 did not get ready (log above)"
  fi
}

main() {
  local desc
  need_pkgs socat procps
  bins
  tmpdir
  declare -ga FLOOR_PORTS=()
  mkdir -p "$BENCH_TMP/seed"
  log "making a ${SIZE_MB} MiB file"
  head -c $((SIZE_MB * 1048576)) /dev/urandom >"$BENCH_TMP/seed/big.bin"
  SHA=$(sha256sum <"$BENCH_TMP/seed/big.bin" | cut -d' ' -f1)
  head -c 32 /dev/urandom | base64 >"$BENCH_TMP/secret"
  floor
  aria2
  ours hybrid
  ours decentralized
  desc="1 seeder -> $PEERS peers, ${SIZE_MB} MiB"
  row "hybrid s to all complete vs aria2" "$desc; aria2c+opentracker" "$OURS_HYBRID" "$ARIA" "<1"
  row "decentralized s to all complete vs aria2" "$desc; aria2c+opentracker" "$OURS_DECENTRALIZED" "$ARIA" "<1"
  row "hybrid s to all complete vs floor" "$desc; floor: $PEERS parallel socat copies" "$OURS_HYBRID" "$FLOOR" "<1"
  row "decentralized s to all complete vs floor" "$desc; floor: $PEERS parallel socat copies" "$OURS_DECENTRALIZED" "$FLOOR" "<1"
  row "aria2 (in ours column) s vs floor" "$desc; aria2c+opentracker vs $PEERS parallel socat copies" "$ARIA" "$FLOOR" "<1"
}

main "$@"
