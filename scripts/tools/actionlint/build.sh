#!/usr/bin/env bash
# actionlint (the GitHub Actions workflow linter), pinned by go.mod beside this script, built once
# and cached (scripts/go-tool.sh); stdout gets the binary's path. Used by
# operator/tests/release.rs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=github.com/rhysd/actionlint
VER=$(awk -v m="$MODULE" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$HERE/go.mod")
[[ -n $VER ]] || { echo "cannot read the $MODULE version from $HERE/go.mod" >&2; exit 1; }
# actionlint -version prints main's version variable (else "(devel)" from the build info).
exec bash "$HERE/../../go-tool.sh" actionlint "$HERE" "$MODULE/cmd/actionlint" "$VER" "-X $MODULE.version=$VER"
