#!/usr/bin/env bash
# Adds a REAL node to the local control plane started by ./up.sh: containerd +
# runc (Debian), CNI bridge networking (Debian's containernetworking-plugins),
# kubelet and kube-proxy (built from the pinned k8s.io/kubernetes by build.sh),
# and CoreDNS for cluster.local names. Pods scheduled there really run, on this
# machine. Needs root. ./node-down.sh undoes everything.
#
# What it changes on the machine (all undone by node-down.sh):
#   - bridge hr0 with 10.88.0.1/16 (pods get 10.88.x.y; the node's InternalIP is
#     10.88.0.1, since the kubelet refuses a loopback node IP)
#   - sysctls net.ipv4.ip_forward=1 and net.bridge.bridge-nf-call-iptables=1
#     (old values saved in the state dir and restored)
#   - iptables: chains HOSTROLE-NODE-FWD (pods may only talk to pods and this
#     host: nothing is forwarded off the machine) and HOSTROLE-NODE-IN (pods
#     cannot reach the kubelet port), plus what kube-proxy, the kubelet and the
#     CNI portmap plugin add (KUBE-*, CNI-*)
#   - cgroups /sys/fs/cgroup/*/kubepods (kubelet, cgroupfs driver)
#   - processes containerd, kubelet, kube-proxy, coredns, socat (pids in
#     STATE/pids); the shims and containers containerd starts
#   - API objects: Node $NODE, Service kube-system/kube-dns (10.96.0.10) and its
#     EndpointSlice, EndpointSlice default/kubernetes-hostrole (in-cluster API
#     access through socat), ClusterRole/Binding hostrole:coredns
#   - fixed paths the kubelet/containerd use whatever the config says:
#     /var/lib/kubelet/device-plugins, /var/log/containers, /var/lib/cni/results,
#     /run/containerd/s
#
# The node is tainted hostrole.io/real-node=true:NoSchedule and labelled
# hostrole.io/real-node=true (kwok-node-0 keeps taking all other pods). With
# HOSTROLE_NODE_ONLY=1 it is not tainted and kwok-node-0 is cordoned instead,
# so that pods created by someone else (the operator) land on the real node.
#
# Env: HOSTROLE_CLUSTER_DIR (the control plane's state, default
# /tmp/hostrole-cluster), HOSTROLE_NODE_DIR (this node's state: containerd root,
# kubelet root, logs/, pids/; default $HOSTROLE_CLUSTER_DIR-node),
# HOSTROLE_NODE_NAME (default 10.88.0.1, see below), HOSTROLE_NODE_ONLY (0/1),
# HOSTROLE_UP_TIMEOUT (seconds per wait step, default 120), HOSTROLE_CACHE_DIR.
# Idempotent. stdout: `export KUBECONFIG=...` and `export HOSTROLE_NODE_CTR=...`
# (the ctr command line for this containerd, see node-load.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}
ND=${HOSTROLE_NODE_DIR:-$DIR-node}
# The node is named after its IP: the API server reaches kubelets (logs, exec,
# port-forward) at the node's Hostname address first, which the kubelet sets to
# the node name; an IP there needs no DNS lookup (a name would be looked up in
# the machine's resolver, and fail).
NODE=${HOSTROLE_NODE_NAME:-10.88.0.1}
ONLY=${HOSTROLE_NODE_ONLY:-0}
TIMEOUT=${HOSTROLE_UP_TIMEOUT:-120}
BRIDGE=hr0
POD_CIDR=10.88.0.0/16
NODE_IP=10.88.0.1
DNS_IP=10.96.0.10
SANDBOX_IMAGE=localhost/hostrole/pause:1
ADMIN_KUBECONFIG=$DIR/kubeconfig
PKI=$DIR/pki
LOGS=$ND/logs
PIDS=$ND/pids

log() { printf '[node-up] %s\n' "$*" >&2; }

[[ $(id -u) == 0 ]] || { log "needs root (containerd, bridge, iptables)"; exit 1; }
[[ -f $ADMIN_KUBECONFIG && -f $PKI/ca.key ]] || {
  log "no control plane in $DIR: run ./up.sh first"; exit 1; }

# ---------------------------------------------------------------- packages
need_pkgs=()
command -v containerd >/dev/null || need_pkgs+=(containerd)
command -v runc >/dev/null || need_pkgs+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need_pkgs+=(containernetworking-plugins)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v socat >/dev/null || need_pkgs+=(socat)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2
fi

BUILD_ENV=$(HOSTROLE_BUILD_NODE=1 "$HERE/build.sh")
eval "$BUILD_ENV" # K8S_BIN ... NODE_BIN PAUSE_BIN COREDNS_BIN
KUBECTL=$K8S_BIN/kubectl
CTR=(ctr --address "$ND/containerd.sock" -n k8s.io)
COMPONENTS=(containerd kubelet kube-proxy coredns socat)

kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }

alive() { # alive NAME: the pid in pids/NAME.pid runs the binary NAME
  local f=$PIDS/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */"$1" ]]
}

kc get --raw /readyz >/dev/null 2>&1 || { log "the API server of $DIR does not answer: run ./up.sh"; exit 1; }

healthy() {
  [[ -f $ND/.hostrole-node ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  kc wait --for=condition=Ready "node/$NODE" --timeout=2s >/dev/null 2>&1
}
emit() {
  echo "export KUBECONFIG=$ADMIN_KUBECONFIG"
  echo "export HOSTROLE_NODE_CTR='ctr --address $ND/containerd.sock -n k8s.io'"
}
if healthy; then
  log "node $NODE ($ND) is already up"
  emit
  exit 0
fi
if [[ -e $ND ]]; then
  log "stale or broken node state in $ND: tearing it down first"
  HOSTROLE_CLUSTER_DIR=$DIR HOSTROLE_NODE_DIR=$ND HOSTROLE_NODE_NAME=$NODE "$HERE/node-down.sh" >&2
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "a link named $BRIDGE exists and is not ours (no state in $ND): refusing"
  exit 1
fi

mkdir -p "$LOGS" "$PIDS" "$ND/pki" "$ND/cni/net.d" "$ND/cni/ipam" "$ND/kubelet" "$ND/pod-logs"
touch "$ND/.hostrole-node" # marker: node-down.sh only deletes dirs that have it
printf '%s\n' "$NODE" >"$ND/node-name"
printf '%s\n' "$ONLY" >"$ND/node-only"

FAILED_COMPONENT=""
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    if [[ -n $FAILED_COMPONENT && -f $LOGS/$FAILED_COMPONENT.log ]]; then
      log "---- last lines of $LOGS/$FAILED_COMPONENT.log ----"
      tail -n 40 "$LOGS/$FAILED_COMPONENT.log" >&2 || true
      log "----"
    fi
    log "failed (exit $rc); undoing what was done"
    rm -rf "${ND}.failed-logs" && cp -r "$LOGS" "${ND}.failed-logs" 2>/dev/null &&
      log "logs kept in ${ND}.failed-logs"
    HOSTROLE_CLUSTER_DIR=$DIR HOSTROLE_NODE_DIR=$ND HOSTROLE_NODE_NAME=$NODE "$HERE/node-down.sh" >&2 || true
  fi
}
trap on_exit EXIT

# ---------------------------------------------------------------- ports (loopback)
declare -A USED=()
while read -r p; do USED[$p]=1; done < <(ss -Hltun | awk '{n = split($5, a, ":"); print a[n]}')
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12768))
    if [[ -z ${USED[$p]:-} ]]; then USED[$p]=1; echo "$p"; return 0; fi
  done
  log "no free port found"; return 1
}
KUBELET_PORT=$(free_port)
KUBELET_HEALTHZ_PORT=$(free_port)
PROXY_HEALTHZ_PORT=$(free_port)
PROXY_METRICS_PORT=$(free_port)
DNS_HEALTH_PORT=$(free_port)
DNS_READY_PORT=$(free_port)
API_FWD_PORT=$(free_port)
printf 'KUBELET_PORT=%s\n' "$KUBELET_PORT" >"$ND/ports"

# ---------------------------------------------------------------- host network
# sysctl NAME VALUE: set, remembering the old value for node-down.sh.
sysctl_set() {
  local f=/proc/sys/${1//.//} old
  old=$(<"$f")
  grep -q "^$1=" "$ND/sysctl.orig" 2>/dev/null || echo "$1=$old" >>"$ND/sysctl.orig"
  [[ $old == "$2" ]] || echo "$2" >"$f"
}
sysctl_set net.ipv4.ip_forward 1
# Pod -> Service -> pod on the same bridge needs the bridge to go through
# iptables (kube-proxy's DNAT and its reverse). Built into this kernel; on
# others `modprobe br_netfilter` first.
[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
sysctl_set net.bridge.bridge-nf-call-iptables 1

ip link add "$BRIDGE" type bridge
echo "$BRIDGE" >"$ND/bridge"
ip addr add "$NODE_IP/16" dev "$BRIDGE"
ip link set "$BRIDGE" up

# Own chains, one jump each from the built-in chains (node-down.sh deletes both).
iptables -N HOSTROLE-NODE-FWD
iptables -A HOSTROLE-NODE-FWD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
iptables -A HOSTROLE-NODE-FWD -i "$BRIDGE" -j DROP -m comment --comment "hostrole node: pods stay on this machine"
iptables -A HOSTROLE-NODE-FWD -o "$BRIDGE" -j DROP -m comment --comment "hostrole node: nothing from outside to pods"
iptables -I FORWARD 1 -j HOSTROLE-NODE-FWD
iptables -N HOSTROLE-NODE-IN
iptables -A HOSTROLE-NODE-IN -i "$BRIDGE" -p tcp --dport "$KUBELET_PORT" -j REJECT -m comment --comment "hostrole node: pods cannot reach the kubelet"
iptables -I INPUT 1 -j HOSTROLE-NODE-IN

# ---------------------------------------------------------------- certificates
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
client_cert() { # client_cert NAME SUBJECT
  newkey "$ND/pki/$1.key"
  openssl req -new -key "$ND/pki/$1.key" -subj "$2" -out "$ND/pki/$1.csr" 2>/dev/null
  printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$ND/pki/$1.ext"
  openssl x509 -req -in "$ND/pki/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -CAserial "$ND/pki/ca.srl" -days 30 -sha256 -extfile "$ND/pki/$1.ext" -out "$ND/pki/$1.crt" 2>/dev/null
  rm -f "$ND/pki/$1.csr" "$ND/pki/$1.ext"
}
client_cert kubelet "/O=system:nodes/CN=system:node:$NODE"
client_cert kube-proxy "/CN=system:kube-proxy" # bound to system:node-proxier by default
client_cert coredns "/CN=hostrole:coredns"
SERVER=$(awk '$1 == "server:" { print $2; exit }' "$ADMIN_KUBECONFIG")
kubeconfig() { # kubeconfig NAME
  cat >"$ND/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hostrole
  cluster:
    server: $SERVER
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 "$ND/pki/$1.crt")
    client-key-data: $(base64 -w0 "$ND/pki/$1.key")
contexts:
- name: hostrole
  context: {cluster: hostrole, user: $1}
current-context: hostrole
EOF
}
kubeconfig kubelet
kubeconfig kube-proxy
kubeconfig coredns

# ---------------------------------------------------------------- processes
start() {
  local name=$1 i
  shift
  log "starting $name"
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  for ((i = 0; i < 50; i++)); do
    alive "$name" && return 0
    sleep 0.1
  done
}
wait_for() {
  local name=$1 what=$2 i
  shift 2
  FAILED_COMPONENT=$name
  for ((i = 0; i < TIMEOUT; i++)); do
    if ! alive "$name"; then log "$name exited while waiting for $what"; return 1; fi
    if "$@" >/dev/null 2>&1; then log "ok: $what"; FAILED_COMPONENT=""; return 0; fi
    sleep 1
  done
  log "timed out after ${TIMEOUT}s waiting for $what"
  return 1
}

# containerd: everything (root, state, sockets, netns mounts) under $ND, no TCP
# listener; the CRI streaming server (exec/attach/port-forward) on 127.0.0.1.
cat >"$ND/containerd.toml" <<EOF
version = 2
root = "$ND/containerd/root"
state = "$ND/containerd/state"
[grpc]
  address = "$ND/containerd.sock"
[ttrpc]
  address = "$ND/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$ND/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # Never ask for an oom_score_adj below containerd's own: lowering it needs
  # CAP_SYS_RESOURCE, which some sandboxes/VMs (like the CI VM) do not grant;
  # without this every pod sandbox (oom_score_adj -998) fails in runc with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$ND/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ND/cni/net.d"
    max_conf_num = 1
EOF
# CNI: one bridge network; host-local IPAM state in $ND; no masquerading (the
# FORWARD chain above keeps pod traffic on this machine anyway).
cat >"$ND/cni/net.d/10-hostrole.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "hostrole-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$ND/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.88.0.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
start containerd containerd --config "$ND/containerd.toml"
wait_for containerd "containerd" "${CTR[@]}" version

# The pause image: a static binary (tools/pause) in a one-layer OCI archive,
# imported under the name containerd's sandbox_image points at.
if ! "${CTR[@]}" images ls -q | grep -qxF "$SANDBOX_IMAGE"; then
  mkdir -p "$ND/pause-rootfs"
  cp "$PAUSE_BIN/pause" "$ND/pause-rootfs/pause"
  "$HERE/node-image.sh" "$ND/pause.oci.tar" "$SANDBOX_IMAGE" "$ND/pause-rootfs" /pause >&2
  HOSTROLE_NODE_DIR=$ND "$HERE/node-load.sh" "$ND/pause.oci.tar" >&2
  rm -rf "$ND/pause-rootfs" "$ND/pause.oci.tar"
fi

# kubelet: cgroupfs (cgroup v1 here), swap tolerated, webhook-less auth: the API
# server of up.sh presents no client certificate to kubelets, so `kubectl
# logs/exec` reach the kubelet as anonymous; that is allowed, and only from
# this host (HOSTROLE-NODE-IN rejects pods). Image GC off: there is no registry
# to pull a collected image back from.
TAINTS="[]"
[[ $ONLY == 1 ]] || TAINTS='[{key: hostrole.io/real-node, value: "true", effect: NoSchedule}]'
cat >"$ND/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
containerRuntimeEndpoint: unix://$ND/containerd.sock
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: ""
podLogsDir: $ND/pod-logs
registerWithTaints: $TAINTS
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
rotateCertificates: false
serverTLSBootstrap: false
enableDebuggingHandlers: true
maxPods: 110
EOF
start kubelet "$NODE_BIN/kubelet" \
  --config="$ND/kubelet.yaml" \
  --kubeconfig="$ND/kubelet.kubeconfig" \
  --root-dir="$ND/kubelet" --cert-dir="$ND/kubelet/pki" \
  --hostname-override="$NODE" --node-ip="$NODE_IP" \
  --node-labels="hostrole.io/real-node=true,type=real"
wait_for kubelet "node $NODE Ready" kc wait --for=condition=Ready "node/$NODE" --timeout=2s

if [[ $ONLY == 1 ]]; then
  kc get node kwok-node-0 >/dev/null 2>&1 && kc cordon kwok-node-0 >&2 && touch "$ND/cordoned-kwok"
fi

# kube-proxy, iptables mode. Leaves the conntrack sysctls alone; NodePorts only
# on the bridge address; no route_localnet (localhostNodePorts: false).
cat >"$ND/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $ND/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false, masqueradeAll: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
EOF
start kube-proxy "$NODE_BIN/kube-proxy" --config="$ND/kube-proxy.yaml"
wait_for kube-proxy "kube-proxy /healthz" curl -fsS --max-time 3 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"

# CoreDNS as a host process on the bridge address (pods reach it through the
# kube-dns Service, 10.96.0.10 -> 10.88.0.1:53). cluster.local from the API
# server; every other name is NXDOMAIN (no forwarding off this machine).
FAILED_COMPONENT=kube-apiserver
kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "hostrole:coredns", labels: {app.kubernetes.io/managed-by: hostrole-node-up}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "hostrole:coredns", labels: {app.kubernetes.io/managed-by: hostrole-node-up}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "hostrole:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "hostrole:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, app.kubernetes.io/managed-by: hostrole-node-up}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-hostrole
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: hostrole-node-up
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
  nodeName: $NODE
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
cat >"$ND/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:$DNS_HEALTH_PORT
    ready 127.0.0.1:$DNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $ND/coredns.kubeconfig hostrole
        pods insecure
    }
    cache 5
}
.:53 {
    bind $NODE_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
start coredns "$COREDNS_BIN/coredns" -conf "$ND/Corefile"
wait_for coredns "CoreDNS /ready" curl -fsS --max-time 3 "http://127.0.0.1:$DNS_READY_PORT/ready"

# In-cluster API access: the "kubernetes" Service (10.96.0.1:443) has no
# endpoints in up.sh's cluster (the API server listens on 127.0.0.1 only), so
# socat relays 10.88.0.1:$API_FWD_PORT -> the API server, and an EndpointSlice
# points the Service there. The serving certificate covers 10.96.0.1 and
# kubernetes.default.svc, so in-cluster clients (service account tokens) work.
API_PORT=${SERVER##*:}
start socat socat "TCP-LISTEN:$API_FWD_PORT,bind=$NODE_IP,fork,reuseaddr" "TCP:127.0.0.1:$API_PORT"
FAILED_COMPONENT=kube-apiserver
kc apply -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-hostrole
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: hostrole-node-up
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
ports:
- {name: https, port: $API_FWD_PORT, protocol: TCP}
EOF
wait_for socat "API server through 10.96.0.1" \
  curl -fsS --max-time 3 --cacert "$PKI/ca.crt" --resolve "kubernetes.default.svc:443:10.96.0.1" \
  https://kubernetes.default.svc/livez

log "node $NODE up: kubelet $("$NODE_BIN/kubelet" --version 2>/dev/null | awk '{print $2}'), $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR == 1 {print $3}')"
log "logs: $LOGS   load images: $HERE/node-load.sh ARCHIVE.oci.tar"
emit
