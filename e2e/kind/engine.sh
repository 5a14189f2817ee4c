#!/usr/bin/env bash
# engine.sh up|down: a Docker engine for the kind stage, started and stopped by this script.
#
#   up    when `docker info` already answers (a user's own Docker), uses it and touches nothing.
#         Otherwise (root only) starts Debian's dockerd (package docker.io, installed when
#         missing) on the default socket, after saving the host's iptables FORWARD policy and
#         net.ipv4.ip_forward, which dockerd changes (FORWARD DROP, ip_forward=1).
#   down  stops the dockerd that `up` started (by its pid file, never another one) and puts
#         the FORWARD policy and ip_forward back as they were, so that the real-node stage
#         (e2e/cluster/node-up.sh, whose bridge needs both) still works afterwards.
#
# Privileged containers (kind's nodes, `docker exec --privileged`) ask runc for every
# capability; where the host's bounding set lacks some (this CI machine has no
# CAP_SYS_RESOURCE), runc fails with "unable to apply caps: operation not permitted". The
# engine started here therefore runs containers through a small wrapper (written below) that
# drops the capabilities absent from /proc/self/status's CapBnd from the OCI bundle's config
# (create/run) or the exec process file, then execs the real runc.
#
# State (pid file, saved settings, daemon log): ${HOSTROLE_KIND_ENGINE_DIR:-/tmp/hostrole-kind-engine}.
# Exit 3 from `up`: this machine cannot start an engine (not root, or dockerd did not answer);
# the log's tail says why.
set -euo pipefail
STATE=${HOSTROLE_KIND_ENGINE_DIR:-/tmp/hostrole-kind-engine}
log() { printf '[engine] %s\n' "$*" >&2; }

write_wrapper() {
  local real
  real=$(command -v runc) || { log "runc is missing (Debian package runc)"; exit 1; }
  cat >"$STATE/runc-capbnd" <<EOF
#!/usr/bin/env bash
# Written by e2e/kind/engine.sh: runc with the capabilities this host cannot grant removed.
set -euo pipefail
real=$real
EOF
  cat >>"$STATE/runc-capbnd" <<'EOF'
file="" prev=""
for a in "$@"; do
  case $prev in
    --bundle|-b) file=$a/config.json; key=.process.capabilities ;;
    --process|-p) file=$a; key=.capabilities ;;
  esac
  case $a in
    --bundle=*) file=${a#--bundle=}/config.json; key=.process.capabilities ;;
    --process=*) file=${a#--process=}; key=.capabilities ;;
  esac
  prev=$a
done
if [[ -n $file && -f $file ]]; then
  allowed=$(capsh --decode="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)" |
    sed 's/^.*=//' | tr 'a-z' 'A-Z' | tr ',' '\n' | jq -R . | jq -sc .)
  tmp=$(mktemp "$file.XXXXXX")
  jq --argjson ok "$allowed" "if $key then $key |= with_entries(.value |= (. // [] | map(select(. as \$c | \$ok | index(\$c))))) else . end" \
    "$file" >"$tmp"
  mv -f "$tmp" "$file"
fi
exec "$real" "$@"
EOF
  chmod 755 "$STATE/runc-capbnd"
}

forward_policy() { iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3; exit}'; }

up() {
  if docker info >/dev/null 2>&1; then
    log "using the Docker engine that is already running"
    return 0
  fi
  if [[ $(id -u) != 0 ]]; then
    log "no Docker engine answers and only root can start one here"; exit 3
  fi
  local pkgs=() p
  for p in docker.io runc libcap2-bin jq iptables; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
  done
  if ((${#pkgs[@]})); then
    log "installing ${pkgs[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  mkdir -p "$STATE"
  # Save what dockerd changes, once (a second `up` must not save dockerd's own settings).
  if [[ ! -f $STATE/saved ]]; then
    printf 'FORWARD=%s\nIP_FORWARD=%s\n' "$(forward_policy)" "$(cat /proc/sys/net/ipv4/ip_forward)" >"$STATE/saved"
  fi
  write_wrapper
  log "starting dockerd (log: $STATE/dockerd.log)"
  setsid dockerd --pidfile "$STATE/dockerd.pid" \
    --add-runtime "capbnd=$STATE/runc-capbnd" --default-runtime capbnd \
    >"$STATE/dockerd.log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 120; i++)); do
    docker info >/dev/null 2>&1 && { log "dockerd is up"; return 0; }
    kill -0 $! 2>/dev/null || break
    sleep 0.5
  done
  log "dockerd did not answer:"; tail -n 20 "$STATE/dockerd.log" >&2
  down
  exit 3
}

down() {
  local pid
  if [[ -f $STATE/dockerd.pid ]]; then
    pid=$(cat "$STATE/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping dockerd ($pid)"
      kill -TERM "$pid"
      for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$STATE/dockerd.pid"
  fi
  if [[ -f $STATE/saved ]]; then
    # shellcheck disable=SC1091
    . "$STATE/saved"
    iptables -P FORWARD "${FORWARD:-ACCEPT}"
    echo "$IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
    log "restored FORWARD policy ${FORWARD:-ACCEPT} and ip_forward=$IP_FORWARD"
    rm -f "$STATE/saved"
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
