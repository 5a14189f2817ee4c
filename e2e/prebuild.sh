#!/usr/bin/env bash
# Builds ahead the Go programs test.sh needs, each cached by version in
# ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole} by the script that owns it: the tools cargo test runs
# (h2spec, promtool, kube-score, actionlint), the control plane, kubelet
# and the node's binaries (e2e/cluster/build.sh), cert-manager's controllers and the Gateway API
# CRDs (e2e/tests/reach.rs), and, as root, what the kind node image is made of (kind itself, the
# Go binaries and the debootstrap'ed base: e2e/kind/node-image.sh --prepare). A warm cache makes
# it a no-op.
#
# test.sh starts it in the background at the lowest CPU priority while the cargo stages run
# (~20 min of Go builds on 2 cores when cold; cargo leaves a core idle during links and while
# tests wait on real clients), and waits for it before the first cluster stage. Each step's
# script is the one the stages call, so a step that fails here is done again there, in the
# foreground, where its error counts.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
status=0
step() {
  local t0=$SECONDS
  printf '[prebuild] %s\n' "$1" >&2
  if "${@:2}" >/dev/null; then
    printf '[prebuild] %s: done in %ss\n' "$1" $((SECONDS - t0)) >&2
  else
    printf '[prebuild] %s: FAILED (exit %s); the stage that needs it builds it again\n' "$1" "$?" >&2
    status=1
  fi
}
# The test tools first: cargo test runs them (scripts/go-tool.sh's lock makes a test that gets
# there first wait for this build rather than start its own).
for tool in agent/tests/tools/h2spec operator/tests/tools/promtool operator/tests/tools/kube-score \
            scripts/tools/actionlint; do
  step "${tool##*/}" bash "$tool/build.sh"
done
# HOSTROLE_SKIP_CLUSTER=1 (test.sh's): the tools only.
if [[ ${HOSTROLE_SKIP_CLUSTER:-0} != 1 ]]; then
  step "control plane and node binaries" env HOSTROLE_BUILD_NODE=1 bash e2e/cluster/build.sh
  step "cert-manager" bash e2e/cluster/build-cert-manager.sh
  step "Gateway API CRDs" bash e2e/cluster/gateway-api-crds.sh
  if [[ $(id -u) == 0 ]]; then
    step "kind" bash e2e/kind/kind-bin.sh
    step "kind node image parts" bash e2e/kind/node-image.sh --prepare
  fi
fi
exit "$status"
