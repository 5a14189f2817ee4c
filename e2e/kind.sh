#!/usr/bin/env bash
# The e2e suite on kind, for users with Docker: create a cluster, build and load the images, run
# e2e/tests/suite.rs (install the chart, apply every example, check from inside the cluster that
# each role serves, helm test, uninstall), then delete the cluster.
# Needs: docker, kind, helm, kubectl, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-hostrole-e2e}
TAG=${TAG:-e2e}
for tool in docker kind helm kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "kind.sh needs $tool on PATH" >&2; exit 1; }
done

kind create cluster --name "$CLUSTER" --config e2e/kind/cluster.yaml
trap 'kind delete cluster --name "$CLUSTER"' EXIT

make images VERSION="$TAG"
kind load docker-image --name "$CLUSTER" "hostrole/operator:$TAG" "hostrole/agent:$TAG"

KUBECONFIG=$(mktemp)
export KUBECONFIG
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

# The suite prints the connectivity matrix with the operator binary.
cargo build --locked -p hostrole-operator
export HOSTROLE_OPERATOR_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/hostrole-operator
HOSTROLE_IMAGE_TAG=$TAG HOSTROLE_IMAGE_PULL_POLICY=IfNotPresent \
  cargo test --locked -p hostrole-e2e --test suite -- --include-ignored --test-threads=1
