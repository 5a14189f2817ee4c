#!/usr/bin/env bash
# Builds h2spec (HTTP/2 conformance tests) from the Go module proxy at the version pinned in
# go.mod beside this script, cached by version under ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole}:
#   h2spec-<ver>/bin/h2spec
# A warm run calls no Go at all. Progress goes to stderr; stdout gets the binary's path.
# Used by agent/tests/it/h2spec.rs (so plain `cargo test` builds it on a fresh machine; Go is on
# the machine, see scripts/install-deps.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}
MODULE=github.com/summerwind/h2spec
VER=$(awk -v m="$MODULE" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$HERE/go.mod")
[[ -n $VER ]] || { echo "cannot read the h2spec version from $HERE/go.mod" >&2; exit 1; }
OUT=$CACHE/h2spec-${VER%+incompatible}/bin/h2spec

if [[ ! -x $OUT ]]; then
  if command -v go >/dev/null 2>&1; then GO=go
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else echo "h2spec is not built and no Go toolchain is installed (PATH or /usr/local/go/bin)" >&2; exit 1
  fi
  mkdir -p "$(dirname "$OUT")"
  echo "[h2spec] building $MODULE $VER ..." >&2
  # A lock: concurrent test runs build once.
  exec 9>"$OUT.lock"
  flock 9
  if [[ ! -x $OUT ]]; then
    (cd "$HERE" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" "$GO" build -trimpath \
      -ldflags "-s -w -X main.VERSION=${VER#v} -X main.COMMIT=module-proxy" \
      -o "$OUT.tmp" "$MODULE/cmd/h2spec") >&2
    mv -f "$OUT.tmp" "$OUT"
  fi
fi
echo "$OUT"
