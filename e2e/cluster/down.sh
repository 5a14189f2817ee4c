#!/usr/bin/env bash
# Stops the control plane started by ./up.sh (by pid: TERM, wait, then KILL)
# and removes its state dir ${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}.
# Safe to run when nothing is up.
set -euo pipefail

DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}
GRACE=${HOSTROLE_DOWN_GRACE:-15} # seconds to wait after TERM before KILL

log() { printf '[down] %s\n' "$*" >&2; }

if [[ ! -e $DIR ]]; then
  log "nothing to do: $DIR does not exist"
  exit 0
fi
if [[ ! -f $DIR/.hostrole-cluster ]]; then
  log "refusing to touch $DIR: it has no .hostrole-cluster marker"
  exit 1
fi

# stop NAME: the pid in pids/NAME.pid, only if it still runs the binary NAME
# (guards against a recycled pid).
stop() {
  local name=$1 f=$DIR/pids/$1.pid pid i
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  rm -f "$f"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */"$name" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < GRACE * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $name ($pid)"; return 0; }
    sleep 0.1
  done
  log "$name ($pid) ignored TERM for ${GRACE}s: KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Clients first, etcd last.
for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop "$c"
done
rm -rf "$DIR"
log "removed $DIR"
