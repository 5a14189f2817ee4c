#!/usr/bin/env bash
# kube-score (static analysis of Kubernetes objects), pinned by go.mod beside this script, built
# once and cached (scripts/go-tool.sh); stdout gets the binary's path. Used by
# operator/tests/kube_score.rs and e2e/tests/chart.rs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=github.com/zegl/kube-score
VER=$(awk -v m="$MODULE" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$HERE/go.mod")
[[ -n $VER ]] || { echo "cannot read the $MODULE version from $HERE/go.mod" >&2; exit 1; }
exec bash "$HERE/../../../../scripts/go-tool.sh" kube-score "$HERE" "$MODULE/cmd/kube-score" "$VER" \
  "-X main.version=${VER#v}"
