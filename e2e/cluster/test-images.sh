#!/usr/bin/env bash
# test-images.sh OUT_DIR: builds, without a registry, the helper image the e2e suite needs on the
# real node, from this machine's Debian binaries (busybox-static, curl):
#   OUT_DIR/client.oci.tar    hostrole.local/e2e-client:dev   sh + curl (the in-cluster client)
# (The chart's helm test runs the operator image: `hostrole-operator self-test`.)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: test-images.sh OUT_DIR}
mkdir -p "$out"
for pkg in busybox-static curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; }
done
# rootfs DIR BINARY...: busybox as /bin/sh, each binary with the libraries ldd names.
rootfs() {
  local dir=$1 bin lib
  shift
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/.kube"
  chmod 1777 "$dir/tmp" "$dir/.kube"
  cp /bin/busybox "$dir/bin/busybox"
  for a in sh cat printf echo; do ln -sf busybox "$dir/bin/$a"; done
  for bin in "$@"; do
    cp "$bin" "$dir/bin/"
    for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true); do
      mkdir -p "$dir$(dirname "$lib")"
      cp -L "$lib" "$dir$lib"
    done
  done
  echo "nonroot:x:65532:65532::/tmp:/bin/sh" >"$dir/etc/passwd"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs "$work/client" /usr/bin/curl
bash "$HERE/node-image.sh" "$out/client.oci.tar" hostrole.local/e2e-client:dev "$work/client" /bin/sh
