#!/usr/bin/env bash
# h2spec (HTTP/2 conformance tests), pinned by go.mod beside this script, built once and cached
# (scripts/go-tool.sh); stdout gets the binary's path. Used by agent/tests/it/h2spec.rs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=github.com/summerwind/h2spec
VER=$(awk -v m="$MODULE" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$HERE/go.mod")
[[ -n $VER ]] || { echo "cannot read the $MODULE version from $HERE/go.mod" >&2; exit 1; }
exec bash "$HERE/../../../../scripts/go-tool.sh" h2spec "$HERE" "$MODULE/cmd/h2spec" "${VER%+incompatible}" \
  "-X main.VERSION=${VER#v} -X main.COMMIT=module-proxy"
