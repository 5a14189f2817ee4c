#!/usr/bin/env bash
# Removes the real node started by ./node-up.sh and everything it made: pods on
# it (deleted through the API while the kubelet still runs, so CNI tears their
# network down), the Node object and the other API objects node-up.sh created,
# the processes (by pid: coredns, kube-proxy, kubelet, containers, containerd
# shims, containerd), mounts under the state dir, the hr0 bridge, iptables
# rules (its own chains, kube-proxy's via `kube-proxy --cleanup`, the kubelet's
# canary chains, CNI portmap rules of its network), the kubepods cgroups,
# the sysctls it changed (restored), and finally the state dir.
# Works with or without the control plane still up; safe to run twice.
# Env: as node-up.sh (HOSTROLE_CLUSTER_DIR, HOSTROLE_NODE_DIR, HOSTROLE_DOWN_GRACE).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}
ND=${HOSTROLE_NODE_DIR:-$DIR-node}
GRACE=${HOSTROLE_DOWN_GRACE:-15}
ADMIN_KUBECONFIG=$DIR/kubeconfig

log() { printf '[node-down] %s\n' "$*" >&2; }

if [[ ! -e $ND ]]; then
  log "nothing to do: $ND does not exist"
  exit 0
fi
if [[ ! -f $ND/.hostrole-node ]]; then
  log "refusing to touch $ND: it has no .hostrole-node marker"
  exit 1
fi
[[ $(id -u) == 0 ]] || { log "needs root"; exit 1; }
NODE=$(cat "$ND/node-name" 2>/dev/null || echo "${HOSTROLE_NODE_NAME:-10.88.0.1}")
BRIDGE=$(cat "$ND/bridge" 2>/dev/null || true)

K8S_BIN=""
if BUILD_ENV=$(HOSTROLE_BUILD_NODE=1 "$HERE/build.sh" 2>/dev/null); then
  eval "$BUILD_ENV"
fi
KUBECTL=${K8S_BIN:+$K8S_BIN/kubectl}
pid_of() { # pid_of NAME: the pid in pids/NAME.pid if it still runs the binary NAME
  local f=$ND/pids/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */"$1" ]] || return 1
  echo "$pid"
}
stop_pid() { # stop_pid NAME PID
  local i
  kill -TERM "$2" 2>/dev/null || return 0
  for ((i = 0; i < GRACE * 10; i++)); do
    kill -0 "$2" 2>/dev/null || { log "stopped $1 ($2)"; return 0; }
    sleep 0.1
  done
  log "$1 ($2) ignored TERM for ${GRACE}s: KILL"
  kill -KILL "$2" 2>/dev/null || true
  sleep 0.2
}
stop() { local pid; pid=$(pid_of "$1") && stop_pid "$1" "$pid"; rm -f "$ND/pids/$1.pid"; }

# ---------------------------------------------------------------- API objects
api_up=0
if [[ -x $KUBECTL && -f $ADMIN_KUBECONFIG ]] &&
  "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  api_up=1
fi
kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }
if ((api_up)); then
  kc cordon "$NODE" >/dev/null 2>&1 # no new pods while they are being deleted
  if pid_of kubelet >/dev/null && pid_of containerd >/dev/null; then
    # Graceful: the kubelet stops the sandboxes, which runs CNI DEL.
    pods=$(kc get pods -A --field-selector "spec.nodeName=$NODE" -o name 2>/dev/null | wc -l)
    if ((pods > 0)); then
      log "deleting $pods pod(s) on $NODE"
      kc delete pods -A --field-selector "spec.nodeName=$NODE" --grace-period=1 --wait=false >/dev/null 2>&1 || true
      for ((i = 0; i < 30; i++)); do
        [[ -z $(kc get pods -A --field-selector "spec.nodeName=$NODE" -o name 2>/dev/null) ]] && break
        sleep 1
      done
    fi
  fi
  # Whatever did not go away (e.g. a sandbox that never started, or no kubelet).
  kc delete pods -A --field-selector "spec.nodeName=$NODE" --grace-period=0 --force >/dev/null 2>&1 || true
  kc delete node "$NODE" --ignore-not-found --wait=false >/dev/null 2>&1 && log "deleted node $NODE"
  [[ -f $ND/cordoned-kwok ]] && kc uncordon kwok-node-0 >/dev/null 2>&1 && log "uncordoned kwok-node-0"
  kc -n kube-system delete endpointslice kube-dns-hostrole --ignore-not-found >/dev/null 2>&1
  kc -n default delete endpointslice kubernetes-hostrole --ignore-not-found >/dev/null 2>&1
  kc -n kube-system delete service kube-dns --ignore-not-found >/dev/null 2>&1
  kc delete clusterrolebinding,clusterrole hostrole:coredns --ignore-not-found >/dev/null 2>&1
else
  log "API server not reachable: Node object and API objects left alone"
fi

# ---------------------------------------------------------------- processes
# socat forks one child per connection: stop those first (children of our pid).
if spid=$(pid_of socat); then
  for c in $(cat "/proc/$spid/task/$spid/children" 2>/dev/null); do kill -TERM "$c" 2>/dev/null; done
fi
for c in socat coredns kube-proxy kubelet; do stop "$c"; done
if [[ -n $K8S_BIN && -x $K8S_BIN/kube-proxy ]]; then
  "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 && log "kube-proxy --cleanup done"
fi

# Containers left behind: kill what the shims of *this* containerd run (their
# pid files are under our state dir), then the shims, then containerd.
TASKS=$ND/containerd/state/io.containerd.runtime.v2.task
if [[ -d $TASKS ]]; then
  for f in "$TASKS"/*/*/init.pid; do
    [[ -f $f ]] && kill -KILL "$(<"$f")" 2>/dev/null
  done
  sleep 0.5
  for f in "$TASKS"/*/*/shim.pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */containerd-shim-runc-v2 ]] && stop_pid shim "$pid"
  done
fi
stop containerd
# Any process still inside the kubepods cgroups is one of ours.
for p in $(cat /sys/fs/cgroup/pids/kubepods/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/cgroup.procs \
  /sys/fs/cgroup/pids/kubepods/*/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/*/cgroup.procs 2>/dev/null); do
  kill -KILL "$p" 2>/dev/null && log "killed leftover pod process $p"
done

# ---------------------------------------------------------------- mounts
ndreal=$(realpath "$ND")
for ((round = 0; round < 5; round++)); do
  mapfile -t mps < <(awk -v d="$ndreal/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  ((${#mps[@]})) || break
  for m in "${mps[@]}"; do
    m=$(printf '%b' "$m") # mountinfo escapes spaces as \040
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
done
left=$(awk -v d="$ndreal/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
((left == 0)) && log "no mounts left under $ND" || log "WARNING: $left mount(s) left under $ND"

# ---------------------------------------------------------------- network
if [[ -n $BRIDGE ]] && ip link show "$BRIDGE" >/dev/null 2>&1; then
  # veths still attached (their pod netns should be gone by now)
  for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null
  done
  ip link del "$BRIDGE" && log "deleted bridge $BRIDGE"
fi
# Our chains.
while iptables -D FORWARD -j HOSTROLE-NODE-FWD 2>/dev/null; do :; done
while iptables -D INPUT -j HOSTROLE-NODE-IN 2>/dev/null; do :; done
for ch in HOSTROLE-NODE-FWD HOSTROLE-NODE-IN; do
  iptables -F "$ch" 2>/dev/null && iptables -X "$ch" 2>/dev/null
done
# The kubelet's canary / hint chains (it recreates them, nobody else uses them).
for ipt in iptables ip6tables; do
  for t in mangle nat filter; do
    for ch in KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-FIREWALL KUBE-PROXY-CANARY; do
      $ipt -t "$t" -S "$ch" >/dev/null 2>&1 || continue
      for b in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
        while $ipt -t "$t" -D "$b" -j "$ch" 2>/dev/null; do :; done
      done
      $ipt -t "$t" -F "$ch" 2>/dev/null && $ipt -t "$t" -X "$ch" 2>/dev/null
    done
  done
done
# CNI portmap rules of our network (comment 'name: "hostrole-node"'), left
# when a pod with a hostPort was not torn down through CNI; then portmap's
# shared chains if nothing else uses them (portmap recreates them on demand).
del_rules() { # del_rules TABLE REGEX: delete the rules (iptables-save form) matching REGEX
  local rule
  iptables-save -t "$1" | grep -E -- "$2" | while read -r rule; do
    eval "iptables -t $1 -D ${rule#-A }" 2>/dev/null
  done
}
for ch in $(iptables-save -t nat | grep -F 'name: \"hostrole-node\"' | grep -o -- '-j CNI-DN-[^ ]*' | cut -c4- | sort -u); do
  del_rules nat "^-A .* -j $ch\$"
  iptables -t nat -F "$ch" 2>/dev/null && iptables -t nat -X "$ch" 2>/dev/null
done
if iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 &&
  [[ $(iptables -t nat -S CNI-HOSTPORT-DNAT | wc -l) == 1 ]] &&
  ! iptables-save -t nat | grep -q '^:CNI-DN-'; then
  for ch in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
    del_rules nat "^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j $ch\$"
    iptables -t nat -F "$ch" 2>/dev/null
  done
  for ch in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
    iptables -t nat -X "$ch" 2>/dev/null
  done
  log "removed the CNI portmap chains"
fi

# ---------------------------------------------------------------- cgroups
for c in /sys/fs/cgroup/*/kubepods; do
  [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
n=$(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | wc -l)
((n == 0)) || log "WARNING: $n kubepods cgroup dir(s) left"

# Fixed paths outside the state dir: the kubelet's device-plugin socket dir and
# container log symlinks, containerd's CNI result cache (go-cni's default).
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null
for l in /var/log/containers/*.log; do
  [[ -L $l && $(readlink "$l") == "$ND"/* ]] && rm -f "$l"
done
rmdir /var/log/containers 2>/dev/null
for r in /var/lib/cni/results/hostrole-node-*; do
  [[ -e $r ]] || continue
  id=${r#/var/lib/cni/results/hostrole-node-}
  id=${id%-*}
  rm -f "$r" "/var/lib/cni/results/cni-loopback-$id-lo"
done
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null

# containerd 1.6 puts shim sockets (and ctr's fifos) under /run/containerd
# whatever its config says: remove those dirs if this node left them empty.
rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null

# ---------------------------------------------------------------- sysctls
if [[ -f $ND/sysctl.orig ]]; then
  while IFS='=' read -r k v; do
    [[ -n $k ]] && echo "$v" >"/proc/sys/${k//.//}" && log "restored $k=$v"
  done <"$ND/sysctl.orig"
fi

if ((left == 0)); then
  rm -rf "$ND"
  log "removed $ND"
else
  log "kept $ND (mounts left)"
  exit 1
fi
