#!/usr/bin/env bash
# agent: one `hostrole-agent up` serving web, file, mail, an index and a peer from one manifest,
# idle, pinned to the server cores with one tokio worker (as in the other benchmarks).
# Measured: start-to-ready (ms from exec to the first 200 of /readyz, polled every 10 ms; best
# and median of RUNS starts), VmRSS and VmHWM (/proc/PID/status) one second after ready, the
# binary's size, and the image archives' sizes if images/build-oci.sh made them (not built here).
# No peer: the figures are absolute (the peer and ratio columns say "-").
set -euo pipefail
export BENCH_NAME=agent
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-$(quick 3 10)}

manifest() {
  local hash
  hash=$(echo -n bench | "$AGENT" hash-password)
  mkdir -p "$BENCH_TMP/site"
  echo '<!doctype html><title>bench</title>' >"$BENCH_TMP/site/index.html"
  cat >"$BENCH_TMP/all.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: bench-users, labels: {hostrole.dev/use: "true"}}
stringData:
  users: |
    u:$hash
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: bench-agent}
spec:
  servers:
    web: {port: $(free_port), site: {path: site}}
    file: {port: $(free_port), users: {secret: bench-users}}
    mail:
      smtpPort: $(free_port)
      submissionPort: $(free_port)
      imapPort: $(free_port)
      pop3Port: $(free_port)
      domains: [bench.lan]
      users: {secret: bench-users}
    index: {port: $(free_port)}
  peer: {network: bench, port: $(free_port), ui: {port: $(free_port)}}
YAML
}

# start_once ADMIN_PORT: starts the agent; sets START_MS (ms until /readyz answers 200) and
# AGENT_PID (not in a subshell, so the EXIT trap knows the pid).
start_once() {
  local port=$1 t0 i
  rm -rf "$BENCH_TMP/data"
  t0=$(now_ns)
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$SERVER_CPUS" \
    "$AGENT" up "$BENCH_TMP/all.yaml" --admin-port "$port" --data-dir "$BENCH_TMP/data" \
    >"$BENCH_TMP/agent.log" 2>&1 &
  AGENT_PID=$!
  track "$AGENT_PID"
  for ((i = 0; i < 3000; i++)); do
    if taskset -c "$LOAD_CPUS" curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      START_MS=$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.0f", (b - a) / 1e6 }')
      return 0
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$BENCH_TMP/agent.log" >&2; die "agent exited"; }
    sleep 0.01
  done
  die "agent not ready after 30 s"
}

main() {
  local port times=() r rss hwm anon img f
  bins
  tmpdir
  manifest
  "$AGENT" check "$BENCH_TMP/all.yaml" >&2
  for ((r = 0; r < RUNS; r++)); do
    port=$(free_port)
    start_once "$port"
    times+=("$START_MS")
    if ((r == RUNS - 1)); then
      sleep 1
      rss=$(proc_status "$AGENT_PID" VmRSS)
      hwm=$(proc_status "$AGENT_PID" VmHWM)
      anon=$(proc_status "$AGENT_PID" RssAnon)
    fi
    stop_pid "$AGENT_PID"
  done
  echo "start-to-ready ms, each run: ${times[*]}"
  row "start-to-ready ms (best of $RUNS)" "hostrole-agent up all.yaml (web+file+mail+index+peer)" \
    "$(printf '%s\n' "${times[@]}" | sort -n | head -n 1)" "-" "-"
  row "start-to-ready ms (median of $RUNS)" "hostrole-agent up all.yaml (web+file+mail+index+peer)" \
    "$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" "-" "-"
  row "VmRSS KiB, idle after ready" "/proc/PID/status" "$rss" "-" "-"
  row "VmHWM KiB, idle after ready" "/proc/PID/status" "$hwm" "-" "-"
  row "RssAnon KiB (heap and stacks; VmRSS less the binary's mapped pages), idle after ready" "/proc/PID/status" "$anon" "-" "-"
  row "binary bytes" "stat hostrole-agent" "$(stat -c %s "$AGENT")" "-" "-"
  img=0
  for f in "$REPO"/target/images/*.tar; do
    [[ -f $f ]] || continue
    img=1
    row "image archive bytes: $(basename "$f")" "stat $f" "$(stat -c %s "$f")" "-" "-"
  done
  ((img)) || echo "no image archives in target/images/ (make images or images/build-oci.sh); image size not measured"
}

main "$@"
