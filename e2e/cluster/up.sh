#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1 for integration tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which
# plays the kubelet of one fake node, so pods on it go Running/Ready without
# any container runtime). Binaries come from ./build.sh (built when missing).
#
# State (certs, kubeconfigs, etcd data, logs/, pids/) lives in
# ${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}; ./down.sh stops it all.
# Idempotent: if the cluster there is already up and healthy, only prints the
# kubeconfig. The last line of stdout is `export KUBECONFIG=...`.
#
# Env: HOSTROLE_CLUSTER_DIR (state dir), HOSTROLE_CACHE_DIR (binary cache, see
# build.sh), HOSTROLE_UP_TIMEOUT (seconds per wait step, default 120).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}
TIMEOUT=${HOSTROLE_UP_TIMEOUT:-120}
NODE=kwok-node-0
KUBECONFIG_OUT=$DIR/kubeconfig
PKI=$DIR/pki
LOGS=$DIR/logs
PIDS=$DIR/pids

log() { printf '[up] %s\n' "$*" >&2; }

BUILD_ENV=$("$HERE/build.sh") # K8S_BIN=..., ETCD_BIN=..., KWOK_DIR=...
eval "$BUILD_ENV"
KUBECTL=$K8S_BIN/kubectl
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

alive() { # alive NAME: the pid in pids/NAME.pid runs the binary NAME
  local f=$PIDS/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */"$1" ]]
}

healthy() {
  [[ -f $KUBECONFIG_OUT ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

if healthy; then
  log "cluster in $DIR is already up"
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
  exit 0
fi
if [[ -e $DIR ]]; then
  log "stale or broken state in $DIR: tearing it down first"
  "$HERE/down.sh" >&2
fi

mkdir -p "$PKI" "$LOGS" "$PIDS"
touch "$DIR/.hostrole-cluster" # marker: down.sh only deletes dirs that have it

# From here on, any failure stops what this run started.
FAILED_COMPONENT=""
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    if [[ -n $FAILED_COMPONENT && -f $LOGS/$FAILED_COMPONENT.log ]]; then
      log "---- last lines of $LOGS/$FAILED_COMPONENT.log ----"
      tail -n 40 "$LOGS/$FAILED_COMPONENT.log" >&2 || true
      log "----"
    fi
    log "failed (exit $rc); stopping what was started"
    # Keep the logs for inspection; down.sh deletes the whole state dir.
    rm -rf "${DIR}.failed-logs" && cp -r "$LOGS" "${DIR}.failed-logs" 2>/dev/null &&
      log "logs kept in ${DIR}.failed-logs"
    "$HERE/down.sh" >&2 || true
  fi
}
trap on_exit EXIT

# ---------------------------------------------------------------- ports
# Random ports in 20000-32767 (below Linux's ephemeral range) that nothing
# listens on yet.
declare -A USED=()
while read -r p; do USED[$p]=1; done < <(ss -Hltn | awk '{n = split($4, a, ":"); print a[n]}')
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12768))
    if [[ -z ${USED[$p]:-} ]]; then
      USED[$p]=1
      echo "$p"
      return 0
    fi
  done
  log "no free port found"
  return 1
}
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
KCM_PORT=$(free_port)
SCHED_PORT=$(free_port)
log "ports: etcd=$ETCD_PORT/$ETCD_PEER_PORT apiserver=$API_PORT controller-manager=$KCM_PORT scheduler=$SCHED_PORT"

# ---------------------------------------------------------------- certificates
# One CA per run; ECDSA P-256 keys (fast to generate, accepted everywhere in k8s).
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# cert NAME SUBJECT EXTENSIONS: key + cert signed by the CA.
cert() {
  local name=$1 subj=$2 ext=$3
  newkey "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
CLIENT_EXT='keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'
newkey "$PKI/ca.key"
openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=hostrole-e2e-ca" -days 30 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$PKI/ca.crt" 2>/dev/null
cert apiserver "/CN=kube-apiserver" 'keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local'
cert admin "/O=system:masters/CN=hostrole-admin" "$CLIENT_EXT"
cert controller-manager "/CN=system:kube-controller-manager" "$CLIENT_EXT"
cert scheduler "/CN=system:kube-scheduler" "$CLIENT_EXT"
cert kwok "/O=system:masters/CN=kwok" "$CLIENT_EXT"
newkey "$PKI/sa.key" # service-account token signing key
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# kubeconfig FILE USER: certificates embedded so the file is self-contained.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hostrole
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: hostrole
  context: {cluster: hostrole, user: $2}
current-context: hostrole
EOF
}
kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
kubeconfig "$DIR/scheduler.kubeconfig" scheduler
kubeconfig "$DIR/kwok.kubeconfig" kwok
kubeconfig "$KUBECONFIG_OUT.tmp" admin # renamed once the cluster is ready

# ---------------------------------------------------------------- processes
# start NAME BINARY ARGS...: own session (setsid) so a Ctrl-C in the calling
# shell does not reach it; stdin closed; output to logs/NAME.log.
start() {
  local name=$1
  shift
  log "starting $name"
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  # setsid execs the binary in place (same pid); wait until it has, since
  # alive() identifies the process by its executable.
  local i
  for ((i = 0; i < 50; i++)); do
    alive "$name" && return 0
    sleep 0.1
  done
}

# wait_for NAME WHAT CMD...: retry CMD every second for up to $TIMEOUT s;
# fail (showing NAME's log) if it never succeeds or NAME's process exits.
wait_for() {
  local name=$1 what=$2 i
  shift 2
  FAILED_COMPONENT=$name
  for ((i = 0; i < TIMEOUT; i++)); do
    if ! alive "$name"; then
      log "$name exited while waiting for $what"
      return 1
    fi
    if "$@" >/dev/null 2>&1; then
      log "ok: $what"
      FAILED_COMPONENT=""
      return 0
    fi
    sleep 1
  done
  log "timed out after ${TIMEOUT}s waiting for $what"
  return 1
}
# controller-manager and scheduler serve /healthz with a self-signed cert they
# generate themselves, hence -k (loopback only).
healthz() { curl -kfsS --max-time 3 "$1"; }
kubectl_admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT.tmp" --request-timeout=10s "$@"; }

# etcd: plain http, loopback only; fsync off because the data is thrown away.
start etcd "$ETCD_BIN/etcd" \
  --name=hostrole --data-dir="$DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="hostrole=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level=warn
wait_for etcd "etcd /health" curl -fsS --max-time 3 "http://127.0.0.1:$ETCD_PORT/health"

# kube-apiserver: the default admission plugins include PodSecurity (enforced
# per namespace through the pod-security.kubernetes.io/* labels).
# --endpoint-reconciler-type=none: the default reconciler would write the
# advertise address 127.0.0.1 into Endpoints "kubernetes", which validation
# rejects (loopback), logging an error every 10s. The "kubernetes" Service
# still exists, without endpoints (nothing in this cluster routes to it).
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  --service-cluster-ip-range=10.96.0.0/16 \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --endpoint-reconciler-type=none \
  --profiling=false
wait_for kube-apiserver "kube-apiserver /readyz" kubectl_admin get --raw /readyz

# --controllers='*' is the default set, which includes statefulset and
# garbage-collector; --use-service-account-credentials gives each controller
# its own service account (as in real clusters).
# No --authentication/authorization-kubeconfig: /healthz is always allowed,
# and without them no requestheader (front-proxy) CA lookup errors are logged.
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --leader-elect=false \
  --controllers='*' \
  --service-account-private-key-file="$PKI/sa.key" \
  --use-service-account-credentials=true \
  --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --profiling=false
wait_for kube-controller-manager "kube-controller-manager /healthz" \
  healthz "https://127.0.0.1:$KCM_PORT/healthz"

start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
  --leader-elect=false \
  --profiling=false
wait_for kube-scheduler "kube-scheduler /healthz" \
  healthz "https://127.0.0.1:$SCHED_PORT/healthz"

# kwok: simulates the kubelet of nodes annotated kwok.x-k8s.io/node=fake, with
# kwok's default "fast" stages (node init + heartbeat, pod ready/complete/delete,
# written by build.sh). No --node-port / --server-address, so kwok opens no
# port; --node-ip=127.0.0.1 makes the node's (and pods' host) IP loopback.
start kwok "$KWOK_DIR/bin/kwok" \
  --kubeconfig="$DIR/kwok.kubeconfig" \
  --config="$KWOK_DIR/stages.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-ip=127.0.0.1 \
  --cidr=10.244.0.0/16

# Pods the fake node takes (a kubelet's default is 110; the operator benchmark needs more).
NODE_PODS=${HOSTROLE_NODE_PODS:-110}
# CPU for every pod's request (hosts request 10m and 2–10m per role): 50m a pod, at least 32.
NODE_CPUS=$(( NODE_PODS < 640 ? 32 : NODE_PODS / 20 ))
# One fake node, no taint so ordinary pods schedule on it. Node status set on
# create is kept (that is how kubelets register), so allocatable comes from here.
FAILED_COMPONENT=kube-apiserver
kubectl_admin create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $NODE
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
status:
  allocatable: {cpu: "$NODE_CPUS", memory: 1Ti, ephemeral-storage: 1Ti, pods: "$NODE_PODS"}
  capacity: {cpu: "$NODE_CPUS", memory: 1Ti, ephemeral-storage: 1Ti, pods: "$NODE_PODS"}
EOF
wait_for kwok "node $NODE Ready" \
  kubectl_admin wait --for=condition=Ready "node/$NODE" --timeout=2s
wait_for kube-controller-manager "ServiceAccount default/default" \
  kubectl_admin -n default get serviceaccount default

mv -f "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
log "cluster up: $("$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" version 2>/dev/null | tr '\n' ' ')"
log "kubectl: $KUBECTL   logs: $LOGS"
echo "export KUBECONFIG=$KUBECONFIG_OUT"
