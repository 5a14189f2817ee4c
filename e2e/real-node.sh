#!/usr/bin/env bash
# The users' e2e suite (e2e/tests/suite.rs, the one e2e/kind.sh runs) on this machine, on a REAL
# node (kubelet + containerd) joined to the local control plane: images built without a daemon,
# loaded into the node's containerd, chart installed, every example applied, web, file and mail
# checked from a client pod, helm test, uninstall. Root only; cleans up after itself.
#
# Exit 3 means only "this machine cannot host a real node" (not root, no right to add a bridge,
# to write network sysctls or to mount), found by the checks below before anything starts;
# test.sh reports it as skipped (a failure on CI). Every later failure, a package install or a
# node that does not come up included, is a failure (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."

# cannot_host_node: prints why this machine cannot host a node (and returns 0), or returns 1.
cannot_host_node() {
  local probe=hrprobe$$ dir
  if [[ $(id -u) != 0 ]]; then echo "not root"; return 0; fi
  if ! ip link add "$probe" type bridge 2>/dev/null; then
    echo "no right to add a network bridge (CAP_NET_ADMIN)"; return 0
  fi
  ip link del "$probe"
  if [[ ! -w /proc/sys/net/ipv4/ip_forward ]]; then
    echo "network sysctls are read-only (/proc/sys/net)"; return 0
  fi
  dir=$(mktemp -d)
  if ! mount -t tmpfs none "$dir" 2>/dev/null; then
    rmdir "$dir"; echo "no right to mount (CAP_SYS_ADMIN)"; return 0
  fi
  umount "$dir"; rmdir "$dir"
  return 1
}
command -v ip >/dev/null || { echo "!! ip (Debian package iproute2) is missing" >&2; exit 1; }
if why=$(cannot_host_node); then
  echo "!! this machine cannot host a real node: $why" >&2
  exit 3
fi

export HOSTROLE_CLUSTER_DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-real-node}
eval "$(HOSTROLE_BUILD_NODE=1 bash e2e/cluster/build.sh)"
images=target/images-node
IMAGE_PREFIX=hostrole.local/ OUT_DIR=$images bash images/build-oci.sh >/dev/null
bash e2e/cluster/test-images.sh "$images"

trap 'bash e2e/cluster/node-down.sh >/dev/null 2>&1 || true; bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
bash e2e/cluster/up.sh | tail -n 1
# The checks above said this machine can host a node: one that does not come up is a failure.
if ! HOSTROLE_NODE_ONLY=1 bash e2e/cluster/node-up.sh | tail -n 1; then
  echo "!! the real node did not come up (logs: ${HOSTROLE_NODE_DIR:-$HOSTROLE_CLUSTER_DIR-node}.failed-logs)" >&2
  exit 1
fi
bash e2e/cluster/node-load.sh "$images"/*.oci.tar

export KUBECONFIG=$HOSTROLE_CLUSTER_DIR/kubeconfig KUBECTL=$K8S_BIN/kubectl HELM=$HELM_BIN/helm
export HOSTROLE_IMAGE_PREFIX=hostrole.local/ HOSTROLE_IMAGE_TAG=0.1.0 HOSTROLE_IMAGE_PULL_POLICY=Never
export HOSTROLE_E2E_CLIENT_IMAGE=hostrole.local/e2e-client:dev
export HOSTROLE_E2E_PROVISION=1
# The suite prints the connectivity matrix with the operator binary.
cargo build --locked -p hostrole-operator
export HOSTROLE_OPERATOR_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/hostrole-operator
cargo test --locked -p hostrole-e2e --test suite -- --include-ignored --test-threads=1
