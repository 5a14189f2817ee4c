#!/usr/bin/env bash
# web: static files, ours (the web role of `hostrole-agent up`) against nginx serving the same
# directory with the same worker count (1 tokio worker thread / worker_processes 1), both
# pinned to the server cores; wrk pinned to the load cores.
# Measured per file (4 KiB, 1 MiB): wrk -t1 -c32 -d${DURATION}s --latency: req/s, p50, p99, and
# the server's CPU time per request.
# Then HTTP/2 without TLS (prior knowledge; nginx `listen ... http2`): h2load -t1 -c32 -m10 for
# the 4 KiB file: req/s. Last, each server's peak memory after all the loads (VmHWM; nginx:
# master + worker).
set -euo pipefail
export BENCH_NAME=web
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-$(quick 3 15)}

# make_site DIR: the two files, same bytes for both servers.
make_site() {
  mkdir -p "$1"
  head -c 4096 /dev/urandom >"$1/4k.bin"
  head -c 1048576 /dev/urandom >"$1/1m.bin"
  echo '<!doctype html><title>bench</title>' >"$1/index.html"
}

start_ours() {
  local port=$1 admin
  admin=$(free_port)
  cat >"$BENCH_TMP/web.yaml" <<YAML
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: bench-web}
spec:
  servers:
    web:
      port: $port
      site: {path: site}
YAML
  start_agent_up "$BENCH_TMP/web.yaml" "$admin" "$BENCH_TMP/data" "$SERVER_CPUS" "$BENCH_TMP/agent.log"
}

start_nginx() {
  local port=$1 d=$BENCH_TMP/nginx
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<CONF
daemon off;
worker_processes ${BENCH_WORKERS:-1};
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  server {
    listen 127.0.0.1:$port;
    root $BENCH_TMP/site;
  }
  server {
    listen 127.0.0.1:$2 http2;
    root $BENCH_TMP/site;
  }
}
CONF
  taskset -c "$SERVER_CPUS" nginx -c "$d/nginx.conf" -e "$d/error.log" &
  NGINX_PID=$!
  track "$NGINX_PID"
  wait_port "$port" 10 || { cat "$d/error.log" >&2; die "nginx did not start"; }
}

# server_cpu PID: CPU seconds of a server: the process and its children (nginx's worker).
server_cpu() {
  local p total=0
  for p in "$1" $(pgrep -P "$1"); do
    total=$(awk -v a="$total" -v b="$(cpu_seconds "$p")" 'BEGIN { print a + b }')
  done
  echo "$total"
}

# load URL PID: runs wrk; sets RPS, P50 and P99 (ms), and CPU_US: the server's CPU microseconds
# per request (less noisy than req/s when the VM's neighbours take cycles).
load() {
  local out c0 n
  c0=$(server_cpu "$2")
  out=$(taskset -c "$LOAD_CPUS" timeout $((DURATION + 30)) \
    wrk -t1 -c32 -d"${DURATION}s" --latency "$1")
  n=$(awk '/requests in/ { print $1 }' <<<"$out")
  CPU_US=$(awk -v a="$c0" -v b="$(server_cpu "$2")" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1e6 / n }')
  RPS=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  P50=$(awk '$1 == "50%" { print $2 }' <<<"$out" | to_ms)
  P99=$(awk '$1 == "99%" { print $2 }' <<<"$out" | to_ms)
  if grep -q 'Non-2xx' <<<"$out"; then log "warning: $(grep 'Non-2xx' <<<"$out")"; fi
}

main() {
  local ours_port nginx_port nginx_h2_port f ors op5 op9 ocpu h2cmd ours_hwm nginx_hwm
  need_pkgs nginx wrk curl procps nghttp2-client
  bins
  tmpdir
  make_site "$BENCH_TMP/site"
  ours_port=$(free_port)
  nginx_port=$(free_port)
  start_ours "$ours_port"
  nginx_h2_port=$(free_port)
  start_nginx "$nginx_port" "$nginx_h2_port"
  for f in 4k.bin 1m.bin; do
    cmp -s <(curl -fsS "http://127.0.0.1:$ours_port/$f") "$BENCH_TMP/site/$f" || die "ours serves a different $f"
    cmp -s <(curl -fsS "http://127.0.0.1:$nginx_port/$f") "$BENCH_TMP/site/$f" || die "nginx serves a different $f"
    load "http://127.0.0.1:$ours_port/$f" "$AGENT_PID"
    ors=$RPS op5=$P50 op9=$P99 ocpu=$CPU_US
    load "http://127.0.0.1:$nginx_port/$f" "$NGINX_PID"
    local cmd="wrk -t1 -c32 -d${DURATION}s --latency http://127.0.0.1:PORT/$f"
    row "$f req/s" "$cmd" "$ors" "$RPS" ">1"
    row "$f server CPU us per request" "$cmd; /proc/PID/stat utime+stime (nginx: master + worker)" "$ocpu" "$CPU_US" "<1"
    row "$f p50 ms" "$cmd" "$op5" "$P50" "<1"
    row "$f p99 ms" "$cmd" "$op9" "$P99" "<1"
  done
  h2load_rps "http://127.0.0.1:$ours_port/4k.bin"
  ors=$RPS
  h2load_rps "http://127.0.0.1:$nginx_h2_port/4k.bin"
  h2cmd="h2load -t1 -c32 -m10 -D ${DURATION} http://127.0.0.1:PORT/4k.bin (h2c, prior knowledge)"
  row "4k.bin HTTP/2 req/s" "$h2cmd" "$ors" "$RPS" ">1"
  ours_hwm=$(proc_status "$AGENT_PID" VmHWM)
  nginx_hwm=0
  for f in "$NGINX_PID" $(pgrep -P "$NGINX_PID"); do
    nginx_hwm=$((nginx_hwm + $(proc_status "$f" VmHWM)))
  done
  row "VmHWM KiB after the loads (nginx: master + worker)" "/proc/PID/status" "$ours_hwm" "$nginx_hwm" "<1"
}

# h2load_rps URL: HTTP/2 load without TLS; sets RPS (fails on any failed request).
h2load_rps() {
  local out
  out=$(taskset -c "$LOAD_CPUS" timeout $((DURATION + 30)) \
    h2load -t1 -c32 -m10 -D "$DURATION" "$1")
  RPS=$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' <<<"$out")
  grep -Eq 'requests: .* 0 failed, 0 errored' <<<"$out" || log "warning: $(grep '^requests:' <<<"$out")"
}

main "$@"
