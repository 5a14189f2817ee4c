#!/usr/bin/env bash
# The e2e suite on a two-node kind cluster (e2e/kind/cluster.yaml): create the cluster, build
# and load the images, run e2e/tests/suite.rs (install the chart, apply every example, check
# from inside the cluster that each role serves, helm test, uninstall), then the tests that only
# more than one node can show (e2e/tests/kind.rs: NetworkPolicy enforced between nodes, hosts
# spread over nodes, drain, a stopped node), then delete the cluster.
#
# Two ways to run it, chosen by flags or environment (never by editing files):
#
#   bash e2e/kind.sh              users with network access and Docker: kind, helm, kubectl on
#                                 PATH; kind's stock node image (cluster.yaml); images built by
#                                 Docker (`make images`) and `kind load docker-image`; the
#                                 suite's helper images are pulled from Docker Hub.
#   bash e2e/kind.sh --offline    what CI does (HOSTROLE_KIND_OFFLINE=1): no registry but the
#                                 package registries. Starts a Docker engine for the run
#                                 (e2e/kind/engine.sh), builds kind, kubectl and helm from the Go
#                                 module proxy and the node image from Debian packages
#                                 (e2e/kind/node-image.sh; all cached by version in
#                                 ~/.cache/hostrole), images without a daemon
#                                 (images/build-oci.sh, e2e/cluster/test-images.sh) loaded with
#                                 `kind load image-archive`.
#
# Each choice can also be made on its own:
#   --node-image IMAGE  (KIND_NODE_IMAGE)       node image for every node; "offline" builds ours
#   --images docker|oci (HOSTROLE_KIND_IMAGES)  how the hostrole images are built and loaded
#   --keep              (HOSTROLE_KIND_KEEP=1)  leave the cluster (and engine) running at the end
#   --suite-only        (HOSTROLE_KIND_SUITE_ONLY=1) only suite.rs, not the multi-node tests
#   KIND_CLUSTER (hostrole-e2e), TAG (image tag for --images docker: e2e), KIND, HELM, KUBECTL.
#
# Exit 3: this machine cannot run kind (no Docker engine answers and none can be started here);
# anything else that fails is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

OFFLINE=${HOSTROLE_KIND_OFFLINE:-0}
NODE_IMAGE=${KIND_NODE_IMAGE:-}
IMAGES=${HOSTROLE_KIND_IMAGES:-}
KEEP=${HOSTROLE_KIND_KEEP:-0}
SUITE_ONLY=${HOSTROLE_KIND_SUITE_ONLY:-0}
while (($#)); do
  case $1 in
    --offline) OFFLINE=1 ;;
    --node-image) NODE_IMAGE=$2; shift ;;
    --images) IMAGES=$2; shift ;;
    --keep) KEEP=1 ;;
    --suite-only) SUITE_ONLY=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) echo "kind.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $OFFLINE == 1 ]]; then
  NODE_IMAGE=${NODE_IMAGE:-offline}
  IMAGES=${IMAGES:-oci}
fi
IMAGES=${IMAGES:-docker}
[[ $IMAGES == docker || $IMAGES == oci ]] || { echo "kind.sh: --images is docker or oci, not $IMAGES" >&2; exit 2; }
CLUSTER=${KIND_CLUSTER:-hostrole-e2e}
log() { printf '\n==> [kind] %s\n' "$*" >&2; }
t0=$SECONDS

if [[ $NODE_IMAGE == offline && $(id -u) != 0 ]]; then
  echo "!! the offline node image is built as root (debootstrap, chroot); give --node-image IMAGE or run as root" >&2
  exit 3
fi

# --- tools -----------------------------------------------------------------------------------
if [[ $OFFLINE == 1 ]]; then
  # kubectl and helm as the other stages use them; kind from the Go module proxy.
  eval "$(bash e2e/cluster/build.sh)"
  KUBECTL=${KUBECTL:-$K8S_BIN/kubectl}
  HELM=${HELM:-$HELM_BIN/helm}
  KIND=${KIND:-$(bash e2e/kind/kind-bin.sh)}
fi
KIND=${KIND:-kind} KUBECTL=${KUBECTL:-kubectl} HELM=${HELM:-helm}
for tool in "$KIND" "$KUBECTL" "$HELM" cargo docker; do
  command -v "$tool" >/dev/null || { echo "kind.sh needs $tool (on PATH, or see --offline)" >&2; exit 1; }
done
export KUBECTL HELM

# --- Docker engine -----------------------------------------------------------------------------
engine_started=0
if ! docker info >/dev/null 2>&1; then
  if [[ $OFFLINE != 1 ]]; then
    echo "!! no Docker engine answers (start Docker, or use --offline as root to start one for the run)" >&2
    exit 3
  fi
  status=0
  bash e2e/kind/engine.sh up || status=$?
  [[ $status == 0 ]] || exit "$status"
  engine_started=1
fi
cleanup() {
  local rc=$?
  if [[ $KEEP == 1 ]]; then
    echo "kept: cluster $CLUSTER (KUBECONFIG=$KUBECONFIG); stop with: $KIND delete cluster --name $CLUSTER; bash e2e/kind/engine.sh down" >&2
    return $rc
  fi
  if [[ $rc != 0 && -n ${KUBECONFIG:-} ]]; then
    mkdir -p target/kind-logs && "$KIND" export logs --name "$CLUSTER" target/kind-logs >/dev/null 2>&1 &&
      echo "kind logs: target/kind-logs" >&2
  fi
  "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  if [[ $engine_started == 1 ]]; then bash e2e/kind/engine.sh down || true; fi
  return $rc
}
trap cleanup EXIT

# --- node image and cluster ----------------------------------------------------------------------
image_args=()
if [[ $NODE_IMAGE == offline ]]; then
  log "node image (built once per version)"
  eval "$(bash e2e/kind/node-image.sh)"
fi
[[ -n $NODE_IMAGE ]] && image_args=(--image "$NODE_IMAGE")
"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
log "kind create cluster ${image_args[*]}"
t_create=$SECONDS
"$KIND" create cluster --name "$CLUSTER" --config e2e/kind/cluster.yaml "${image_args[@]}" --wait 3m
echo "cluster up in $((SECONDS - t_create))s" >&2
KUBECONFIG=$(mktemp "${TMPDIR:-/tmp}/kind-$CLUSTER.XXXXXX")
export KUBECONFIG
"$KIND" get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

# --- images --------------------------------------------------------------------------------------
if [[ $IMAGES == docker ]]; then
  TAG=${TAG:-e2e}
  log "images: make images (Docker)"
  make images VERSION="$TAG"
  "$KIND" load docker-image --name "$CLUSTER" "hostrole/operator:$TAG" "hostrole/agent:$TAG"
  export HOSTROLE_IMAGE_TAG=$TAG HOSTROLE_IMAGE_PULL_POLICY=IfNotPresent
else
  log "images: images/build-oci.sh and e2e/cluster/test-images.sh (no daemon)"
  dir=target/images-kind
  IMAGE_PREFIX=hostrole.local/ OUT_DIR=$dir bash images/build-oci.sh >/dev/null
  bash e2e/cluster/test-images.sh "$dir"
  for archive in "$dir"/*.oci.tar; do
    "$KIND" load image-archive --name "$CLUSTER" "$archive"
  done
  VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
  export HOSTROLE_IMAGE_PREFIX=hostrole.local/ HOSTROLE_IMAGE_TAG=$VERSION HOSTROLE_IMAGE_PULL_POLICY=Never
  export HOSTROLE_E2E_CLIENT_IMAGE=hostrole.local/e2e-client:dev HOSTROLE_E2E_KUBECTL_IMAGE=hostrole.local/e2e-kubectl:dev
fi

# --- tests ---------------------------------------------------------------------------------------
# The suite prints the connectivity matrix with the operator binary.
cargo build --locked -p hostrole-operator
export HOSTROLE_OPERATOR_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/hostrole-operator
export HOSTROLE_KIND_CLUSTER=$CLUSTER HOSTROLE_KIND_BIN=$KIND
log "the users' suite (e2e/tests/suite.rs) on $("$KUBECTL" get nodes --no-headers | wc -l) nodes"
t_suite=$SECONDS
cargo test --locked -p hostrole-e2e --test suite -- --include-ignored --test-threads=1
echo "suite on kind: $((SECONDS - t_suite))s" >&2
if [[ $SUITE_ONLY != 1 ]]; then
  log "multi-node tests (e2e/tests/kind.rs)"
  t_multi=$SECONDS
  cargo test --locked -p hostrole-e2e --test kind -- --include-ignored --test-threads=1
  echo "multi-node tests: $((SECONDS - t_multi))s" >&2
fi
echo "kind stage: $((SECONDS - t0))s" >&2
