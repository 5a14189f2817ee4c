#!/usr/bin/env bash
# Smoke test of the real node (node-up.sh must have run): a busybox httpd pod
# on the node, reached from this host by pod IP, ClusterIP and hostPort; from
# inside the pod: cluster DNS, a Service, the API server's Service (TCP);
# kubectl logs/exec. Deletes its namespace at the end (also on failure).
# Root (for ctr). busybox comes from Debian's busybox-static (installed when
# missing) and is packed with node-image.sh. Exit status 0 iff every check passed.
# Env: as node-up.sh (HOSTROLE_CLUSTER_DIR, HOSTROLE_NODE_DIR, HOSTROLE_CACHE_DIR).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}
ND=${HOSTROLE_NODE_DIR:-$DIR-node}
NS=hostrole-node-smoke
IMAGE=localhost/hostrole/busybox:1
export KUBECONFIG=$DIR/kubeconfig

log() { printf '[node-smoke] %s\n' "$*" >&2; }
[[ -f $ND/.hostrole-node ]] || { log "no node in $ND: run node-up.sh"; exit 1; }
eval "$(HOSTROLE_BUILD_NODE=1 "$HERE/build.sh" 2>/dev/null)"
K=("$K8S_BIN/kubectl" --request-timeout=20s)

if [[ ! -x /bin/busybox ]] || ! /bin/busybox --list | grep -qx httpd; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2
fi
if ! ctr --address "$ND/containerd.sock" -n k8s.io images ls -q | grep -qxF "$IMAGE"; then
  work=$(mktemp -d)
  mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp"
  cp /bin/busybox "$work/root/bin/"
  for a in $(/bin/busybox --list); do [[ -e $work/root/bin/$a ]] || ln -s busybox "$work/root/bin/$a"; done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$work/root/etc/passwd"
  chmod 1777 "$work/root/tmp"
  "$HERE/node-image.sh" "$work/busybox.oci.tar" "$IMAGE" "$work/root" /bin/sh
  HOSTROLE_NODE_DIR=$ND "$HERE/node-load.sh" "$work/busybox.oci.tar" >/dev/null
  rm -rf "$work"
fi

cleanup() { "${K[@]}" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${K[@]}" wait --for=delete "namespace/$NS" --timeout=90s >/dev/null 2>&1 || true # a previous run's
"${K[@]}" create namespace "$NS" >/dev/null
"${K[@]}" -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeSelector: {hostrole.io/real-node: "true"}
  tolerations: [{key: hostrole.io/real-node, operator: Exists, effect: NoSchedule}]
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: $IMAGE
    imagePullPolicy: Never
    command: [/bin/sh, -c, 'mkdir -p /tmp/www && echo smoke-ok >/tmp/www/index.html && echo started && exec httpd -f -p 8080 -h /tmp/www']
    ports: [{containerPort: 8080, hostPort: 18090, hostIP: 10.88.0.1}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
"${K[@]}" -n "$NS" wait --for=condition=Ready pod/web --timeout=90s >/dev/null

fails=0
check() { # check NAME WANT CMD...: CMD must succeed and print WANT
  local name=$1 want=$2 out ok=0 i
  shift 2
  for ((i = 0; i < 15; i++)); do # kube-proxy may take a moment to program a new Service
    if out=$("$@" 2>&1) && [[ $out == *"$want"* ]]; then ok=1; break; fi
    sleep 1
  done
  if ((ok)); then
    log "PASS $name"
  else
    log "FAIL $name: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    fails=$((fails + 1))
  fi
}
POD_IP=$("${K[@]}" -n "$NS" get pod web -o jsonpath='{.status.podIP}')
SVC_IP=$("${K[@]}" -n "$NS" get svc web -o jsonpath='{.spec.clusterIP}')
kx() { "${K[@]}" -n "$NS" exec web -- "$@"; }
check "host -> pod IP $POD_IP" smoke-ok curl -fsS --max-time 5 "http://$POD_IP:8080/"
check "host -> ClusterIP $SVC_IP" smoke-ok curl -fsS --max-time 5 "http://$SVC_IP/"
check "host -> hostPort 10.88.0.1:18090" smoke-ok curl -fsS --max-time 5 "http://10.88.0.1:18090/"
check "pod: DNS web.$NS.svc.cluster.local" "Address: $SVC_IP" kx nslookup "web.$NS.svc.cluster.local"
check "pod -> Service by ClusterIP" smoke-ok kx sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 nc $SVC_IP 80"
# Plain HTTP to the TLS port: the API server's own answer proves the path.
check "pod -> API server via kubernetes Service 10.96.0.1:443" "HTTPS server" \
  kx sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 nc 10.96.0.1 443"
check "kubectl logs" started "${K[@]}" -n "$NS" logs web
if iptables -C FORWARD -j HOSTROLE-NODE-FWD 2>/dev/null; then
  log "PASS egress guard (FORWARD -> HOSTROLE-NODE-FWD)"
else
  log "FAIL egress guard missing"; fails=$((fails + 1))
fi
if ((fails)); then
  log "$fails check(s) failed"
  exit 1
fi
log "all checks passed"
