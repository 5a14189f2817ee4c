#!/usr/bin/env bash
# The Gateway API CRDs of a pinned release (standard channel), taken from the Go module
# sigs.k8s.io/gateway-api through the Go module proxy (checksummed by go) and cached under
# ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole}/gateway-api-<ver>/crds/.
# stdout: one line for eval, GATEWAY_API_CRDS=...
set -euo pipefail
VER=v1.6.3
CACHE=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}
OUT=$CACHE/gateway-api-$VER/crds
gocmd() {
  if command -v go >/dev/null 2>&1; then command go "$@"
  elif [[ -x /usr/local/go/bin/go ]]; then /usr/local/go/bin/go "$@"
  else echo "go not found (PATH or /usr/local/go/bin)" >&2; exit 1; fi
}
export GOTOOLCHAIN=local
if [[ ! -s $OUT/gateway.networking.k8s.io_httproutes.yaml ]]; then
  dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod gocmd mod download -json "sigs.k8s.io/gateway-api@$VER" \
        | awk -F'"' '$2 == "Dir" { print $4 }')
  [[ -d $dir/config/crd/standard ]] || { echo "gateway-api $VER: no config/crd/standard in $dir" >&2; exit 1; }
  mkdir -p "$OUT.tmp"
  for r in gatewayclasses gateways httproutes tlsroutes tcproutes referencegrants; do
    cp "$dir/config/crd/standard/gateway.networking.k8s.io_$r.yaml" "$OUT.tmp/"
  done
  chmod -R u+w "$OUT.tmp"
  rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
fi
echo "GATEWAY_API_CRDS=$OUT"
