#!/usr/bin/env bash
# Builds one command of a Go module from the Go module proxy, pinned by the go.mod in DIR, into
# ${HOSTROLE_CACHE_DIR:-~/.cache/hostrole}/NAME-VERSION/bin/NAME, once: a warm run calls no Go.
# Concurrent runs build once (a lock). Progress goes to stderr; stdout gets the binary's path.
#   go-tool.sh NAME DIR PACKAGE VERSION [LDFLAGS]
# The tools' build.sh scripts (h2spec, kube-score, promtool, actionlint) read their version from
# their go.mod and call this. Go is on the machine (scripts/install-deps.sh).
set -euo pipefail

name=$1 dir=$2 package=$3 version=$4 ldflags=${5:-}
cache=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}
out=$cache/$name-$version/bin/$name

if [[ ! -x $out ]]; then
  if command -v go >/dev/null 2>&1; then go=go
  elif [[ -x /usr/local/go/bin/go ]]; then go=/usr/local/go/bin/go
  else echo "$name is not built and no Go toolchain is installed (PATH or /usr/local/go/bin)" >&2; exit 1
  fi
  mkdir -p "$(dirname "$out")"
  exec 9>"$out.lock"
  flock 9
  if [[ ! -x $out ]]; then
    echo "[$name] building $package $version ..." >&2
    t0=$SECONDS
    (cd "$dir" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" "$go" build -trimpath \
      -ldflags "-s -w $ldflags" -o "$out.tmp" "$package") >&2
    mv -f "$out.tmp" "$out"
    echo "[$name] built in $((SECONDS - t0))s" >&2
  fi
fi
echo "$out"
