#!/usr/bin/env bash
# Measures how long one file takes to reach N peers from one seeder on loopback
# (decentralized network, real agent processes).
#   bench/p2p-transfer.sh [SIZE_MIB=1024] [PEERS=4] [BINARY=target/release/hostrole-agent]
# Prints the elapsed time, the aggregate and per-peer throughput, and which peers supplied
# each download's chunks; checks every copy against the seeder's with cmp.
set -euo pipefail
size_mib=${1:-1024}
peers=${2:-4}
bin=${3:-target/release/hostrole-agent}
bin=$(realpath "$bin")
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

base=${BASE_PORT:-14000}
echo "bench-secret" > "$work/secret"
start() { # name index seeds...
  local name=$1 i=$2; shift 2
  local seeds=""; for s in "$@"; do seeds+="    - $s"$'\n'; done
  mkdir -p "$work/$name/share"
  cat > "$work/$name.yaml" <<YAML
hostRole: $name
bind: 127.0.0.1
adminPort: $((base + 100 + i))
peer:
  network: bench
  port: $((base + i))
  uiPort: $((base + 200 + i))
  root: $work/$name/share
  secretFile: $work/secret
  advertise: 127.0.0.1:$((base + i))
  heartbeatSeconds: 1
  seeds:
$seeds
YAML
  RUST_LOG=warn "$bin" run --config "$work/$name.yaml" > "$work/$name.log" 2>&1 &
  pids+=($!)
}
wait_ready() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }

echo "writing ${size_mib} MiB of random data"
mkdir -p "$work/seed/share"
head -c $((size_mib << 20)) /dev/urandom > "$work/seed/share/payload.bin"
start seed 0 "127.0.0.1:$((base + 99))"
wait_ready $((base + 100))
for i in $(seq 1 "$peers"); do start "p$i" "$i" "127.0.0.1:$base"; done
for i in $(seq 1 "$peers"); do wait_ready $((base + 100 + i)); done
hash=$(curl -s "http://127.0.0.1:$((base + 200))/api/files" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["hash"])')
for i in $(seq 1 "$peers"); do
  until curl -s "http://127.0.0.1:$((base + 200 + i))/api/search?q=payload" | grep -q "$hash"; do sleep 0.2; done
done
t0=$(date +%s.%N)
for i in $(seq 1 "$peers"); do
  curl -s -o /dev/null -H 'X-Requested-With: bench' -d "{\"hash\":\"$hash\"}" "http://127.0.0.1:$((base + 200 + i))/api/downloads"
done
declare -A took=()
while ((${#took[@]} < peers)); do
  for i in $(seq 1 "$peers"); do
    [[ -n ${took[$i]:-} ]] && continue
    # curl and grep only: polling must not take the CPU the transfer needs.
    state=$(curl -s "http://127.0.0.1:$((base + 200 + i))/api/downloads")
    [[ $state == *'"state":"failed"'* ]] && { echo "p$i failed: $state" >&2; exit 1; }
    [[ $state == *'"state":"complete"'* ]] && took[$i]=$(echo "$(date +%s.%N) - $t0" | bc)
  done
  sleep 0.25
done
total=$(echo "$(date +%s.%N) - $t0" | bc)
for i in $(seq 1 "$peers"); do
  cmp "$work/seed/share/payload.bin" "$work/p$i/share/payload.bin"
  sources=$(curl -s "http://127.0.0.1:$((base + 200 + i))/api/downloads" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["sources"])')
  printf 'p%s: %6.2f s  %7.1f MB/s  sources %s\n' "$i" "${took[$i]}" "$(echo "$size_mib * 1.048576 / ${took[$i]}" | bc -l)" "$sources"
done
printf 'all %s peers: %.2f s, aggregate %.1f MB/s (%s MiB each, identical to the seed)\n' \
  "$peers" "$total" "$(echo "$peers * $size_mib * 1.048576 / $total" | bc -l)" "$size_mib"
