#!/usr/bin/env bash
# node-image.sh ARCHIVE NAME ROOTFS_DIR ENTRYPOINT [ARG...]
# Packs ROOTFS_DIR as a one-layer OCI image archive (what `ctr images import`
# and node-load.sh read) named NAME, with the given entrypoint; no registry, no
# Docker, only tar and sha256sum. Files are owned by root, timestamps are
# SOURCE_DATE_EPOCH (default 0), so the same input gives the same archive.
# Used by node-up.sh for the pause image; handy for test images, e.g. a
# busybox one from Debian's busybox-static.
set -euo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 ARCHIVE NAME ROOTFS_DIR ENTRYPOINT [ARG...]" >&2; exit 2; }
archive=$1 name=$2 rootfs=$3
shift 3
epoch=${SOURCE_DATE_EPOCH:-0}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"

# blob FILE: moves FILE into blobs/ under its digest, prints "DIGEST SIZE".
blob() {
  local d s
  d=$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  mv -f "$1" "$work/blobs/sha256/$d"
  echo "sha256:$d $s"
}
json_list() { # json_list ITEM...: ["ITEM", ...] (items must not need escaping)
  local out="" i
  for i in "$@"; do out+="${out:+,}\"$i\""; done
  echo "[$out]"
}

tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$rootfs" -cf "$work/layer" .
read -r layer layer_size < <(blob "$work/layer")
cat >"$work/config" <<JSON
{"created":"$created","architecture":"amd64","os":"linux","config":{"Entrypoint":$(json_list "$@"),"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["$layer"]},"history":[{"created":"$created","created_by":"e2e/cluster/node-image.sh"}]}
JSON
read -r config config_size < <(blob "$work/config")
cat >"$work/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$layer","size":$layer_size}]}
JSON
read -r manifest manifest_size < <(blob "$work/manifest")
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
cat >"$work/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$manifest","size":$manifest_size,"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"${name##*:}"}}]}
JSON
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -C "$work" \
  -cf "$archive.tmp" oci-layout index.json blobs
mv -f "$archive.tmp" "$archive"
echo "[node-image] $archive: $name ($(du -h "$archive" | cut -f1))" >&2
