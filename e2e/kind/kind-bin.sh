#!/usr/bin/env bash
# Prints the path of the kind binary at the version of versions.env, built from the Go module
# proxy once and cached in ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole}/kind-<version>/bin.
# Progress on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
kind_dir=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}/kind-$KIND_VERSION/bin
if [[ ! -x $kind_dir/kind ]]; then
  printf '[kind] building kind %s\n' "$KIND_VERSION" >&2
  rm -rf "$kind_dir.tmp"
  (cd /tmp && GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN=$kind_dir.tmp go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION") >&2
  mkdir -p "$kind_dir" && mv -f "$kind_dir.tmp/kind" "$kind_dir/kind" && rm -rf "$kind_dir.tmp"
fi
echo "$kind_dir/kind"
