#!/usr/bin/env bash
# Builds the cert-manager controllers the tests run (tools/cert-manager: cert-manager's own
# certificate, request, issuer and approver controllers, SelfSigned and CA issuers) from the
# Go module proxy at the version pinned in tools/cert-manager/go.mod, and copies that
# version's CRDs (deploy/crds of the module). Cached by version under
# ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole}/cert-manager-<ver>/{bin/controller,crds/}.
# stdout: one line for eval, CERT_MANAGER_DIR=...
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=$HERE/tools/cert-manager
CACHE=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}
log() { printf '[cert-manager] %s\n' "$*" >&2; }
VER=$(awk '$1 == "require" && $2 == "github.com/cert-manager/cert-manager" { print $3; exit }' "$TOOLS/go.mod")
[[ -n $VER ]] || { log "cannot read the cert-manager version from $TOOLS/go.mod"; exit 1; }
OUT=$CACHE/cert-manager-$VER
gocmd() {
  if command -v go >/dev/null 2>&1; then command go "$@"
  elif [[ -x /usr/local/go/bin/go ]]; then /usr/local/go/bin/go "$@"
  else log "go not found (PATH or /usr/local/go/bin)"; exit 1; fi
}
export GOTOOLCHAIN=local
if [[ ! -x $OUT/bin/controller ]]; then
  mkdir -p "$OUT/bin"
  log "building the controller ($VER) ..."
  t0=$SECONDS
  (cd "$TOOLS" && gocmd build -p 2 -trimpath -ldflags "-s -w" -o "$OUT/bin/controller.tmp" .) >&2
  mv -f "$OUT/bin/controller.tmp" "$OUT/bin/controller"
  log "built in $((SECONDS - t0))s"
fi
if [[ ! -s $OUT/crds/cert-manager.io_certificates.yaml ]]; then
  src=$(cd "$TOOLS" && gocmd list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
  mkdir -p "$OUT/crds.tmp"
  cp "$src"/deploy/crds/*.yaml "$OUT/crds.tmp/"
  chmod -R u+w "$OUT/crds.tmp"
  rm -rf "$OUT/crds" && mv "$OUT/crds.tmp" "$OUT/crds"
  log "copied the CRDs"
fi
echo "CERT_MANAGER_DIR=$OUT"
