#!/usr/bin/env bash
# file: WebDAV, ours (the file role of `hostrole-agent up`, anonymous read-write) against nginx
# with its DAV module (same worker count, no authentication either), both pinned to the server
# cores; curl pinned to the load cores, one process per direction.
# Measured: PUT then GET of one large file (MB/s) and of many 4 KiB files (files/s, one curl
# with a --config file listing every URL so it reuses one connection).
# Floor, no HTTP: the large file copied through a plain loopback socket with socat, 1 MiB buffers (into a file
# on the same disk for PUT, into /dev/null for GET) and `cat file > /dev/null`; the small files
# written with one `split` process and read back with one `cat` (the filesystem's own floor).
# FILE_STORAGE (e.g. 8Gi) gives ours a storage quota (nginx has none): the cost of counting usage.
set -euo pipefail
export BENCH_NAME=file
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIG_MB=${BIG_MB:-$(quick 64 1024)}
NFILES=${NFILES:-$(quick 500 10000)}
CURL_TIMEOUT=${CURL_TIMEOUT:-900}

start_ours() {
  local port=$1 admin
  admin=$(free_port)
  cat >"$BENCH_TMP/file.yaml" <<YAML
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: bench-file}
spec:
  servers:
    file:
      port: $port
      anonymous: ReadWrite
      maxUploadSize: $((BIG_MB * 2))Mi${FILE_STORAGE:+
      storage: $FILE_STORAGE}
YAML
  start_agent_up "$BENCH_TMP/file.yaml" "$admin" "$BENCH_TMP/ours" "$SERVER_CPUS" "$BENCH_TMP/agent.log"
}

start_nginx() {
  local port=$1 d=$BENCH_TMP/nginx ext=""
  mkdir -p "$d" "$BENCH_TMP/nginx-root"
  chown www-data: "$BENCH_TMP/nginx-root"
  if [[ -f /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ]]; then
    ext="load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;"
  fi
  cat >"$d/nginx.conf" <<CONF
$ext
daemon off;
user www-data;
worker_processes ${BENCH_WORKERS:-1};
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_max_body_size 0;
  client_body_temp_path $BENCH_TMP/nginx-root/.tmp;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  server {
    listen 127.0.0.1:$port;
    root $BENCH_TMP/nginx-root;
    dav_methods PUT DELETE MKCOL COPY MOVE;
    create_full_put_path on;
    dav_access user:rw group:r all:r;
    ${ext:+dav_ext_methods PROPFIND OPTIONS;}
  }
}
CONF
  taskset -c "$SERVER_CPUS" nginx -c "$d/nginx.conf" -e "$d/error.log" &
  track $!
  wait_port "$port" 10 || { cat "$d/error.log" >&2; die "nginx did not start"; }
  [[ -n $ext ]] && log "nginx: DAV ext module loaded (PROPFIND, OPTIONS)"
  return 0
}

# timed_curl ARGS...: curl on the load cores; prints the wall seconds; fails on any non-2xx.
timed_curl() {
  local t0 codes bad
  t0=$(now_ns)
  codes=$(taskset -c "$LOAD_CPUS" curl -sS --max-time "$CURL_TIMEOUT" -w '%{http_code}\n' "$@")
  secs_since "$t0"
  echo
  bad=$(grep -cv '^2' <<<"$codes" || true)
  ((bad == 0)) || die "$bad requests failed (codes: $(sort <<<"$codes" | uniq -c | tr '\n' ' '))"
}

# many_config BASE DIRECTION: a curl config with NFILES URLs, PUT (upload) or GET.
many_config() {
  local base=$1 dir=$2 i
  for ((i = 0; i < NFILES; i++)); do
    printf 'url = "%s/many/f%05d"\n' "$base" "$i"
    if [[ $dir == put ]]; then printf 'upload-file = "%s"\n' "$BENCH_TMP/small.bin"; fi
    printf 'output = "/dev/null"\n'
  done
}

# measure NAME BASE: sets <NAME>_PUT/_GET (MB/s) and <NAME>_MPUT/_MGET (files/s).
measure() {
  local name=$1 base=$2 s
  # Each timed phase starts with no dirty pages: otherwise the writeback of the previous phase
  # (1 GiB) lands in the next one's fsyncs (ours fsyncs each upload; nginx does not).
  sync
  s=$(timed_curl -T "$BENCH_TMP/big.bin" "$base/big.bin" -o /dev/null)
  printf -v "${name}_PUT" '%s' "$(awk -v m="$BIG_MB" -v s="$s" 'BEGIN { printf "%.1f", m / s }')"
  s=$(timed_curl "$base/big.bin" -o "$BENCH_TMP/got.bin")
  cmp -s "$BENCH_TMP/got.bin" "$BENCH_TMP/big.bin" || die "$name: GET returned other bytes"
  rm -f "$BENCH_TMP/got.bin"
  s=$(timed_curl "$base/big.bin" -o /dev/null)
  printf -v "${name}_GET" '%s' "$(awk -v m="$BIG_MB" -v s="$s" 'BEGIN { printf "%.1f", m / s }')"
  curl -sS -f -X MKCOL "$base/many/" -o /dev/null
  many_config "$base" put >"$BENCH_TMP/put.cfg"
  many_config "$base" get >"$BENCH_TMP/get.cfg"
  sync
  s=$(timed_curl --config "$BENCH_TMP/put.cfg")
  printf -v "${name}_MPUT" '%s' "$(awk -v n="$NFILES" -v s="$s" 'BEGIN { printf "%.0f", n / s }')"
  s=$(timed_curl --config "$BENCH_TMP/get.cfg")
  printf -v "${name}_MGET" '%s' "$(awk -v n="$NFILES" -v s="$s" 'BEGIN { printf "%.0f", n / s }')"
}

# floor: socket copies of the big file, cat, split/cat of the small files. Sets FLOOR_*.
floor() {
  local port t0 s rpid
  sync
  port=$(free_port)
  # PUT floor: bytes from the load cores over a socket into a file on the same disk.
  taskset -c "$SERVER_CPUS" socat -b 1048576 -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" \
    "CREATE:$BENCH_TMP/floor.bin" &
  rpid=$!
  track "$rpid"
  wait_port "$port" 10
  t0=$(now_ns)
  taskset -c "$LOAD_CPUS" socat -b 1048576 -u "OPEN:$BENCH_TMP/big.bin" "TCP:127.0.0.1:$port"
  wait "$rpid"
  s=$(secs_since "$t0")
  FLOOR_PUT=$(awk -v m="$BIG_MB" -v s="$s" 'BEGIN { printf "%.1f", m / s }')
  # GET floor: the stored file over a socket into /dev/null.
  port=$(free_port)
  taskset -c "$LOAD_CPUS" socat -b 1048576 -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" OPEN:/dev/null &
  rpid=$!
  track "$rpid"
  wait_port "$port" 10
  t0=$(now_ns)
  taskset -c "$SERVER_CPUS" socat -b 1048576 -u "OPEN:$BENCH_TMP/floor.bin" "TCP:127.0.0.1:$port"
  wait "$rpid"
  s=$(secs_since "$t0")
  FLOOR_GET=$(awk -v m="$BIG_MB" -v s="$s" 'BEGIN { printf "%.1f", m / s }')
  t0=$(now_ns)
  cat "$BENCH_TMP/floor.bin" >/dev/null
  s=$(secs_since "$t0")
  FLOOR_CAT=$(awk -v m="$BIG_MB" -v s="$s" 'BEGIN { printf "%.1f", m / s }')
  rm -f "$BENCH_TMP/floor.bin"
  # Many files: one process creates NFILES files of 4 KiB, one reads them back.
  mkdir -p "$BENCH_TMP/floor-many"
  t0=$(now_ns)
  head -c $((NFILES * 4096)) /dev/zero | (cd "$BENCH_TMP/floor-many" && split -a 6 -b 4096 - f)
  s=$(secs_since "$t0")
  FLOOR_MPUT=$(awk -v n="$NFILES" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
  t0=$(now_ns)
  find "$BENCH_TMP/floor-many" -type f -exec cat {} + >/dev/null
  s=$(secs_since "$t0")
  FLOOR_MGET=$(awk -v n="$NFILES" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
  rm -rf "$BENCH_TMP/floor-many"
  # Many durable files: what our 2xx promises (nginx's does not): each 4 KiB file written to a
  # temporary name, fsynced, renamed into place, and the directory fsynced, one after another.
  mkdir -p "$BENCH_TMP/floor-durable"
  t0=$(now_ns)
  python3 - "$BENCH_TMP/floor-durable" "$NFILES" <<'PY'
import os, sys
d, n, data = sys.argv[1], int(sys.argv[2]), b"\0" * 4096
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
for i in range(n):
    tmp = f"{d}/.f{i:05d}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, f"{d}/f{i:05d}")
    os.fsync(dfd)
PY
  s=$(secs_since "$t0")
  FLOOR_DURABLE=$(awk -v n="$NFILES" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
  rm -rf "$BENCH_TMP/floor-durable"
}

main() {
  local ours_port nginx_port c1 c2
  need_pkgs nginx libnginx-mod-http-dav-ext curl socat procps
  bins
  tmpdir
  log "making a ${BIG_MB} MiB file"
  head -c $((BIG_MB * 1048576)) /dev/urandom >"$BENCH_TMP/big.bin"
  head -c 4096 /dev/urandom >"$BENCH_TMP/small.bin"
  ours_port=$(free_port)
  nginx_port=$(free_port)
  start_ours "$ours_port"
  start_nginx "$nginx_port"
  measure OURS "http://127.0.0.1:$ours_port"
  measure NGINX "http://127.0.0.1:$nginx_port"
  floor
  c1="curl -T big.bin http://127.0.0.1:PORT/big.bin (${BIG_MB} MiB)"
  c2="curl --config (${NFILES} URLs of 4 KiB, one connection)"
  row "PUT 1 file MB/s" "$c1" "$OURS_PUT" "$NGINX_PUT" ">1"
  row "GET 1 file MB/s" "${c1/-T big.bin /}" "$OURS_GET" "$NGINX_GET" ">1"
  row "PUT many files/s" "$c2" "$OURS_MPUT" "$NGINX_MPUT" ">1"
  row "GET many files/s" "$c2" "$OURS_MGET" "$NGINX_MGET" ">1"
  row "PUT 1 file MB/s vs floor" "socat OPEN:big.bin TCP:... -> CREATE:file" "$OURS_PUT" "$FLOOR_PUT" ">1"
  row "GET 1 file MB/s vs floor" "socat OPEN:file TCP:... -> /dev/null" "$OURS_GET" "$FLOOR_GET" ">1"
  row "GET 1 file MB/s vs cat" "cat file > /dev/null (page cache)" "$OURS_GET" "$FLOOR_CAT" ">1"
  row "PUT many files/s vs floor" "split -b 4096 (one process, no network)" "$OURS_MPUT" "$FLOOR_MPUT" ">1"
  row "PUT many files/s vs durable floor" "python3: write, fsync, rename, fsync the directory, per file (no network)" "$OURS_MPUT" "$FLOOR_DURABLE" ">1"
  row "GET many files/s vs floor" "find -exec cat {} + (one process, no network)" "$OURS_MGET" "$FLOOR_MGET" ">1"
}

main "$@"
