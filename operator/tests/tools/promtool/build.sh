#!/usr/bin/env bash
# promtool (Prometheus' rule checker), pinned by go.mod beside this script, built once and cached
# (scripts/go-tool.sh) under Prometheus' release number; stdout gets the binary's path. Used by
# operator/tests/observability.rs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=github.com/prometheus/prometheus
VER=$(awk -v m="$MODULE" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$HERE/go.mod")
[[ -n $VER ]] || { echo "cannot read the $MODULE version from $HERE/go.mod" >&2; exit 1; }
# Prometheus 3.x is tagged v0.3XY.Z for Go: v0.316.0 is 3.16.0.
minor=${VER#v0.3}; minor=${minor%%.*}; patch=${VER##*.}
RELEASE=3.$((10#$minor)).$patch
exec bash "$HERE/../../../../scripts/go-tool.sh" promtool "$HERE" "$MODULE/cmd/promtool" "v$RELEASE" \
  "-X github.com/prometheus/common/version.Version=$RELEASE -X github.com/prometheus/common/version.Revision=module-proxy"
