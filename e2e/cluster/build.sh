#!/usr/bin/env bash
# Builds the local control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) and helm from the Go module proxy, at the
# versions pinned in tools/go.mod, tools/etcd/go.mod, tools/kwok/go.mod and
# tools/helm/go.mod.
#
# Binaries are cached by version under ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole}:
#   k8s-<ver>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   etcd-<ver>/bin/etcd
#   kwok-<ver>/bin/kwok and kwok-<ver>/stages.yaml (kwok's default "fast" stages)
#   helm-<ver>/bin/helm
# Only missing files are built; a warm run does not call go at all.
#
# Progress goes to stderr. stdout gets exactly four lines, meant for `eval`:
#   K8S_BIN=...  ETCD_BIN=...  KWOK_DIR=...  HELM_BIN=...
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=$HERE/tools
CACHE=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}

log() { printf '[build] %s\n' "$*" >&2; }

# modver GO_MOD MODULE: the version of MODULE required in GO_MOD (read with awk,
# so that a warm run needs no Go toolchain).
modver() {
  awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit }
                 $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

K8S_VER=$(modver "$TOOLS/go.mod" k8s.io/kubernetes)
ETCD_VER=$(modver "$TOOLS/etcd/go.mod" go.etcd.io/etcd/server/v3)
KWOK_VER=$(modver "$TOOLS/kwok/go.mod" sigs.k8s.io/kwok)
HELM_VER=$(modver "$TOOLS/helm/go.mod" helm.sh/helm/v3)
# client-go v0.X.Y as resolved in helm's module = Kubernetes 1.X (see below).
HELM_KCLIENT_VER=$(modver "$TOOLS/helm/go.mod" k8s.io/client-go)
for v in K8S_VER ETCD_VER KWOK_VER HELM_VER HELM_KCLIENT_VER; do
  [[ -n ${!v} ]] || { log "cannot read $v from tools/*go.mod"; exit 1; }
done

K8S_BIN=$CACHE/k8s-$K8S_VER/bin
ETCD_BIN=$CACHE/etcd-$ETCD_VER/bin
KWOK_DIR=$CACHE/kwok-$KWOK_VER
HELM_BIN=$CACHE/helm-$HELM_VER/bin

gocmd() {
  if command -v go >/dev/null 2>&1; then
    command go "$@"
  elif [[ -x /usr/local/go/bin/go ]]; then
    /usr/local/go/bin/go "$@"
  else
    log "go not found (PATH or /usr/local/go/bin)"; exit 1
  fi
}
# Use the installed toolchain, never fetch another one.
export GOTOOLCHAIN=local

# build MODDIR OUT PKG [LDFLAGS]: go build one binary, one at a time (2 cores),
# into a temp file renamed at the end so an interrupted build leaves nothing.
build() {
  local moddir=$1 out=$2 pkg=$3 ldflags=${4:-}
  if [[ -x $out ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$out")"
  log "building $(basename "$out") ($pkg) ..."
  local t0=$SECONDS
  (cd "$moddir" && gocmd build -p 2 -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") >&2
  mv -f "$out.tmp" "$out"
  log "built $(basename "$out") in $((SECONDS - t0))s"
}

# Kubernetes: stamp the version so /version and `kubectl version` are right
# (client-go has its own copy of the version variables, used by kubectl).
minor=${K8S_VER#v1.}
minor=${minor%%.*}
K8S_LDFLAGS=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $p.gitVersion=$K8S_VER -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

T0=$SECONDS
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$TOOLS" "$K8S_BIN/$c" "k8s.io/kubernetes/cmd/$c" "$K8S_LDFLAGS"
done
# etcd 3.6's server main package is the module root of go.etcd.io/etcd/server/v3.
build "$TOOLS/etcd" "$ETCD_BIN/etcd" go.etcd.io/etcd/server/v3
build "$TOOLS/kwok" "$KWOK_DIR/bin/kwok" sigs.k8s.io/kwok/cmd/kwok

# The kwok binary ships no default stages (kwokctl writes them into its config),
# so take kwok's own "fast" node and pod stages from the module source. The node
# heartbeat is the non-lease one because standalone kwok manages no Lease unless
# --node-lease-duration-seconds is set.
if [[ ! -s $KWOK_DIR/stages.yaml ]]; then
  src=$(cd "$TOOLS/kwok" && gocmd list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  st=$src/kustomize/stage
  {
    for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo '---'
      cat "$st/$f"
    done
  } >"$KWOK_DIR/stages.yaml.tmp"
  mv -f "$KWOK_DIR/stages.yaml.tmp" "$KWOK_DIR/stages.yaml"
  log "wrote $KWOK_DIR/stages.yaml"
fi
# helm: the same -X flags as helm's Makefile for a tagged release (the module zip
# has no git metadata, so gitCommit stays empty). The default Kubernetes version
# (.Capabilities.KubeVersion in `helm template`, deprecation checks in `helm lint`)
# is 1.<minor of client-go>, as the Makefile derives it.
hminor=${HELM_KCLIENT_VER#v0.}
hminor=${hminor%%.*}
HELM_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_VER"
HELM_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.metadata="
HELM_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  HELM_LDFLAGS+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$hminor"
done
build "$TOOLS/helm" "$HELM_BIN/helm" helm.sh/helm/v3/cmd/helm "$HELM_LDFLAGS"

log "all binaries present (${SECONDS}s total, $((SECONDS - T0))s building)"

echo "K8S_BIN=$K8S_BIN"
echo "ETCD_BIN=$ETCD_BIN"
echo "KWOK_DIR=$KWOK_DIR"
echo "HELM_BIN=$HELM_BIN"

# ---------------------------------------------------------------- real node (opt-in)
# Only with HOSTROLE_BUILD_NODE=1 (node-up.sh sets it; up.sh does not, so the
# control plane alone never pays for these builds): kubelet and kube-proxy from
# the same k8s.io/kubernetes (tools/go.mod, same version stamping), CoreDNS
# (tools/coredns: a small main with only the plugins a test cluster needs) and
# a static pause binary (tools/pause). stdout gets three more lines after the
# four above:   NODE_BIN=...  PAUSE_BIN=...  COREDNS_BIN=...
if [[ ${HOSTROLE_BUILD_NODE:-0} == 1 ]]; then
  COREDNS_VER=$(modver "$TOOLS/coredns/go.mod" github.com/coredns/coredns)
  [[ -n $COREDNS_VER ]] || { log "cannot read the CoreDNS version from tools/coredns/go.mod"; exit 1; }
  COREDNS_BIN=$CACHE/coredns-$COREDNS_VER/bin
  T1=$SECONDS
  for c in kubelet kube-proxy; do
    build "$TOOLS" "$K8S_BIN/$c" "k8s.io/kubernetes/cmd/$c" "$K8S_LDFLAGS"
  done
  # CGO_ENABLED=0: fully static, so it runs in an image with nothing else in it.
  # Cached by the hash of its source (it has no version of its own).
  PAUSE_SUM=$(cat "$TOOLS/pause/go.mod" "$TOOLS/pause/main.go" | sha256sum | cut -c1-12)
  CGO_ENABLED=0 build "$TOOLS/pause" "$CACHE/pause-$PAUSE_SUM/bin/pause" .
  build "$TOOLS/coredns" "$COREDNS_BIN/coredns" . \
    "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VER"
  log "node binaries present ($((SECONDS - T1))s)"
  echo "NODE_BIN=$K8S_BIN"
  echo "PAUSE_BIN=$CACHE/pause-$PAUSE_SUM/bin"
  echo "COREDNS_BIN=$COREDNS_BIN"
fi
