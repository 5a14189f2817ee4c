#!/usr/bin/env bash
# Every test of the project: formatting, lints, unit tests, the agent's role tests with real
# clients, and the operator against a real control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok) and the Helm chart against it, started here and
# stopped at the end.
# CI runs this through .ci/run. HOSTROLE_SKIP_CLUSTER=1 skips the cluster stages,
# HOSTROLE_SKIP_REAL_NODE=1 the real-node stage and HOSTROLE_SKIP_KIND=1 the kind stage (each
# says so).
# A machine that cannot do something a stage needs (a real node: root, bridges, mounts; kind: a
# Docker engine that answers or root to start one; the davfs2 test: root, /dev/fuse, mounts) is
# reported as SKIPPED, except on CI (CI=true), where it is a failure: there, only the variables
# above and HOSTROLE_SKIP_DAVFS2=1 (users without root) skip, on purpose. Anything else that fails on the way (a package install, a build, a node that
# does not come up) fails the run everywhere.
set -euo pipefail
cd "$(dirname "$0")"

bash scripts/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

# The Go builds (e2e/prebuild.sh: the test tools, then the cluster stages' binaries; ~25 min on
# 2 cores when the cache is cold) run in the background from here, at the lowest CPU priority,
# beside the cargo stages; the first cluster stage waits for them.
prebuild_log=$(mktemp "${TMPDIR:-/tmp}/hostrole-prebuild.XXXXXX")
setsid nice -n 19 bash e2e/prebuild.sh 2>"$prebuild_log" &
prebuild_pid=$!
trap 'kill -- "-$prebuild_pid" 2>/dev/null || true' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test (unit, snapshots, CRD drift, schema and CEL rules; web, file and mail roles with curl, h2spec (HTTP/2, built from the Go module proxy and cached), rclone, cadaver, a davfs2 mount, litmus (nginx-dav beside it), swaks, mutt, Python's smtplib/imaplib/poplib; the chat role with irssi, weechat and Python's irc, each also against ngircd; the radio role with ffmpeg, ezstream, curl, mpg123 and mpv, also against icecast2; the print role with CUPS' ipptool conformance suites, also against ippeveprinter, and lp through a cupsd queue; clients against the real roles; peers and index with 5 agent processes; the peer UI, the file share, the web role's error pages and the live topology view in headless Chromium; the topology exports drawn by Graphviz, parsed as XML and checked against their JSON schema)"
cargo test --locked

step "fuzz the hand-written parsers and wire types (SMTP, IMAP, POP3, IRC, IPP, the peer protocol), ${FUZZ_SECONDS:=15}s each"
FUZZ_SECONDS=$FUZZ_SECONDS bash fuzz/run.sh

if [[ ${HOSTROLE_SKIP_CLUSTER:-0} == 1 ]]; then
  printf '\n!! SKIPPED: the control-plane tests (HOSTROLE_SKIP_CLUSTER=1)\n'
  exit 0
fi

step "local control plane (first run builds Kubernetes from source: ~15 min on 2 cores, begun by e2e/prebuild.sh)"
wait "$prebuild_pid" || true
cat "$prebuild_log"
trap - EXIT
eval "$(bash e2e/cluster/build.sh)"
export HOSTROLE_CLUSTER_DIR=${HOSTROLE_TEST_CLUSTER_DIR:-/tmp/hostrole-test-cluster}
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
bash e2e/cluster/up.sh | tail -n 1
export KUBECONFIG=$HOSTROLE_CLUSTER_DIR/kubeconfig
export KUBECTL=$K8S_BIN/kubectl
export HELM=$HELM_BIN/helm
cargo build --locked -p hostrole-operator
export HOSTROLE_OPERATOR_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/hostrole-operator
export HOSTROLE_PLUGIN_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/kubectl-hostrole

step "operator, chart and kubectl plugin against the real API server (e2e/tests/control_plane.rs, references.rs, chart.rs, plugin.rs, ...)"
# suite.rs (in-cluster role checks) needs nodes that run containers: the real-node stage below.
cargo test --locked -p hostrole-e2e -- --test-threads=4

bash e2e/cluster/down.sh >/dev/null 2>&1 || true
trap - EXIT
# The stages below keep their own state: inherited, this KUBECONFIG was where kind wrote its
# cluster's context, which left a stray kubeconfig in the control plane's state dir, and up.sh
# then refused that dir on the next run of this script.
unset KUBECONFIG HOSTROLE_CLUSTER_DIR

# stage NAME SKIP_VARIABLE COMMAND...: runs a stage whose exit 3 means "this machine cannot run
# it" (skipped here, a failure on CI); any other failure fails the run.
stage() {
  local what=$1 var=$2 status=0
  shift 2
  if [[ ${!var:-0} == 1 ]]; then
    printf '\n!! SKIPPED: %s (%s=1)\n' "$what" "$var"
    return 0
  fi
  "$@" || status=$?
  if [[ $status == 3 && ${CI:-} == true ]]; then
    printf '\n!! FAILED: this machine cannot run %s (reason above); on CI that is a failure (%s=1 skips the stage on purpose)\n' "$what" "$var"
    exit 1
  elif [[ $status == 3 ]]; then
    printf '\n!! SKIPPED: this machine cannot run %s (reason above)\n' "$what"
  elif [[ $status != 0 ]]; then
    exit "$status"
  fi
}

step "the users' e2e suite (suite.rs) on a real node: kubelet + containerd here, images built without a daemon"
stage "the users' e2e suite on a real node" HOSTROLE_SKIP_REAL_NODE bash e2e/real-node.sh

# After the real node (the Docker engine started for kind changes the FORWARD policy and
# ip_forward, which the real node's bridge needs; e2e/kind/engine.sh puts both back).
step "the users' e2e suite and the multi-node tests (kind.rs) on a two-node kind cluster: offline node image from Debian packages and Go modules, Docker engine started for the run (first run builds the node image: ~10 min on 2 cores)"
stage "the users' e2e suite on kind" HOSTROLE_SKIP_KIND bash e2e/kind.sh --offline
