#!/usr/bin/env bash
# The users' e2e suite (e2e/tests/suite.rs, the one e2e/kind.sh runs) on this machine, on a REAL
# node (kubelet + containerd) joined to the local control plane: images built without a daemon,
# loaded into the node's containerd, chart installed, every example applied, web, file and mail
# checked from a client pod, helm test, uninstall. Root only; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

export HOSTROLE_CLUSTER_DIR=${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-real-node}
eval "$(HOSTROLE_BUILD_NODE=1 bash e2e/cluster/build.sh)"
images=target/images-node
IMAGE_PREFIX=hostrole.local/ OUT_DIR=$images bash images/build-oci.sh >/dev/null
bash e2e/cluster/test-images.sh "$images"

trap 'bash e2e/cluster/node-down.sh >/dev/null 2>&1 || true; bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
bash e2e/cluster/up.sh | tail -n 1
# Exit 3 means "the real node could not come up here": the caller reports it as skipped.
if ! HOSTROLE_NODE_ONLY=1 bash e2e/cluster/node-up.sh | tail -n 1; then
  echo "!! the real node did not come up (logs: ${HOSTROLE_NODE_DIR:-$HOSTROLE_CLUSTER_DIR-node}/logs)" >&2
  exit 3
fi
bash e2e/cluster/node-load.sh "$images"/*.oci.tar

export KUBECONFIG=$HOSTROLE_CLUSTER_DIR/kubeconfig KUBECTL=$K8S_BIN/kubectl HELM=$HELM_BIN/helm
export HOSTROLE_IMAGE_PREFIX=hostrole.local/ HOSTROLE_IMAGE_TAG=0.1.0 HOSTROLE_IMAGE_PULL_POLICY=Never
export HOSTROLE_E2E_CLIENT_IMAGE=hostrole.local/e2e-client:dev HOSTROLE_E2E_KUBECTL_IMAGE=hostrole.local/e2e-kubectl:dev
export HOSTROLE_E2E_PROVISION=1
# The suite prints the connectivity matrix with the operator binary.
cargo build --locked -p hostrole-operator
export HOSTROLE_OPERATOR_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/hostrole-operator
cargo test --locked -p hostrole-e2e --test suite -- --include-ignored --test-threads=1
