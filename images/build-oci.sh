#!/usr/bin/env bash
# build-oci.sh: builds the operator and agent images as OCI image-layout archives, with no
# container engine and no registry (for machines without Docker; `make images` uses Docker):
#
#   target/images/hostrole-operator.oci.tar   hostrole/operator:$VERSION
#   target/images/hostrole-agent.oci.tar      hostrole/agent:$VERSION
#
# Each archive holds one linux image (amd64, or ARCH) of one layer (images/rootfs.sh: the release binary,
# the shared libraries it links, passwd/group with nonroot 65532, /tmp), run as 65532:65532 with
# the binary as ENTRYPOINT, the same files as images/Dockerfile's targets. Load one with
# `kind load image-archive FILE` or `ctr -n k8s.io images import FILE`; inspect it with
# `skopeo inspect oci-archive:FILE`.
#
# umoci (a Debian package) writes the OCI blobs, manifest and index; this script writes the
# layer tarball itself so that it is reproducible, and tars the layout the same way: the same
# commit gives byte-identical archives.
#
# Environment (all optional):
#   VERSION             image tag (default: the workspace version in Cargo.toml)
#   SOURCE_DATE_EPOCH   every timestamp in the images (default: the last commit's time)
#   IMAGE_PREFIX        image name prefix (default: hostrole/)
#   CONTAINERD_DOMAIN   when set, the io.containerd.image.name annotation is DOMAIN/NAME:TAG,
#                       the fully qualified form that the kubelet asks the CRI for when a pod
#                       says NAME:TAG (containerd stores that annotation verbatim); the OCI
#                       ref.name stays NAME:TAG
#   OUT_DIR             where the archives go (default: target/images, target/images/arm64
#                       for ARCH=arm64)
#   ARCH                amd64 (default) or arm64. On another machine architecture this is a
#                       cross build: Rust's target aarch64-unknown-linux-gnu (or x86_64-...)
#                       must be installed (rustup target add), and Debian's cross compiler and
#                       C library (gcc-aarch64-linux-gnu libc6-dev-arm64-cross, installed when
#                       missing) link it; the image gets that C library (images/rootfs.sh,
#                       ROOTFS_SYSROOT). The release workflow builds both this way.
#   SKIP_CARGO_BUILD=1  package the binaries already built (target/release, or
#                       target/<rust target>/release for a cross build)
#
# stdout gets exactly one line per image, "ARCHIVE IMAGE_NAME"; progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[images] %s\n' "$*" >&2; }
t_start=$SECONDS

# --- architecture ----------------------------------------------------------------------------
ARCH=${ARCH:-amd64}
case $ARCH in
  amd64) rust_target=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu; deb_cross=amd64 ;;
  arm64) rust_target=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; deb_cross=arm64 ;;
  *) log "ARCH must be amd64 or arm64, not $ARCH"; exit 1 ;;
esac
case $(uname -m) in
  x86_64) host_arch=amd64 ;;
  aarch64 | arm64) host_arch=arm64 ;;
  *) host_arch=$(uname -m) ;;
esac
cross=0
[[ $ARCH == "$host_arch" ]] || cross=1
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# --- tools: umoci and jq from Debian (and a cross toolchain), installed when missing ----------
packages=(umoci jq tar gzip coreutils findutils libc-bin)
if ((cross)); then
  packages+=("gcc-$gnu" "libc6-dev-$deb_cross-cross" binutils)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    exit 1
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- parameters ------------------------------------------------------------------------------
if [[ -z ${VERSION:-} ]]; then
  # The first top-level `version = "..."` in the root Cargo.toml is [workspace.package]'s.
  VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
fi
[[ -n $VERSION ]] || { log "cannot read the workspace version from Cargo.toml; set VERSION"; exit 1; }
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || { log "SOURCE_DATE_EPOCH must be seconds since 1970"; exit 1; }
export SOURCE_DATE_EPOCH
IMAGE_PREFIX=${IMAGE_PREFIX:-hostrole/}
CONTAINERD_DOMAIN=${CONTAINERD_DOMAIN:-}
if [[ $ARCH == amd64 ]]; then
  OUT_DIR=${OUT_DIR:-$ROOT/target/images}
else
  OUT_DIR=${OUT_DIR:-$ROOT/target/images/$ARCH}
fi
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
# The same PATH as distroless; nothing but the entrypoint is in the image.
image_path_env=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- binaries --------------------------------------------------------------------------------
if ((cross)); then
  bin_dir=$TARGET_DIR/$rust_target/release
  export ROOTFS_SYSROOT=/usr/$gnu
  if [[ ${SKIP_CARGO_BUILD:-0} != 1 ]]; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$rust_target"; then
      log "Rust's $rust_target target is not installed: rustup target add $rust_target"
      exit 1
    fi
    # The cross linker, and the C compiler for crates with C parts (ring).
    target_env=${rust_target^^}
    target_env=${target_env//-/_}
    export "CARGO_TARGET_${target_env}_LINKER=${gnu}-gcc" "CC_${rust_target//-/_}=${gnu}-gcc"
    log "cargo build --release --locked --target $rust_target (operator, agent)"
    cargo build --release --locked --target "$rust_target" -p hostrole-operator -p hostrole-agent >&2
  fi
else
  bin_dir=$TARGET_DIR/release
  if [[ ${SKIP_CARGO_BUILD:-0} != 1 ]]; then
    log "cargo build --release --locked (operator, agent)"
    cargo build --release --locked -p hostrole-operator -p hostrole-agent >&2
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hostrole-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT_DIR"

# Reproducible tar: sorted names, one mtime, numeric owners, no xattrs/ACLs, GNU format (no
# pax atime/ctime records).
tar_opts=(--format=gnu --sort=name "--mtime=@$SOURCE_DATE_EPOCH" --numeric-owner
  --no-acls --no-xattrs --no-selinux)

# build_image COMPONENT: writes $OUT_DIR/hostrole-COMPONENT.oci.tar
build_image() {
  local component=$1
  local bin_name=hostrole-$component
  local bin=$bin_dir/$bin_name
  local name=$IMAGE_PREFIX$component:$VERSION
  local ctr_name=$name
  if [[ -n $CONTAINERD_DOMAIN ]]; then
    ctr_name=$CONTAINERD_DOMAIN/$name
  fi
  local dir=$work/$component
  local layout=$dir/layout
  local archive=$OUT_DIR/$bin_name.oci.tar
  [[ -x $bin ]] || { log "$bin is missing (build it, or drop SKIP_CARGO_BUILD)"; exit 1; }
  mkdir -p "$dir"

  bash "$ROOT/images/rootfs.sh" "$bin" "$dir/rootfs"

  # One layer. Everything is root's except the nonroot home, appended with its owner (so the
  # result does not depend on who runs this script).
  tar "${tar_opts[@]}" --owner=0 --group=0 --exclude=./home/nonroot \
    -C "$dir/rootfs" -cf "$dir/layer.tar" .
  tar "${tar_opts[@]}" --owner=65532 --group=65532 \
    -C "$dir/rootfs" -rf "$dir/layer.tar" ./home/nonroot

  umoci init --layout "$layout"
  umoci new --image "$layout:$name"
  umoci raw add-layer --image "$layout:$name" \
    --history.created "$created" \
    --history.created_by "images/build-oci.sh: images/rootfs.sh $bin_name" \
    "$dir/layer.tar"
  umoci config --image "$layout:$name" \
    --created "$created" \
    --architecture "$ARCH" --os linux \
    --config.user 65532:65532 \
    --config.entrypoint "/$bin_name" \
    --config.env "PATH=$image_path_env" \
    --config.workingdir / \
    --config.label "org.opencontainers.image.title=$bin_name" \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0" \
    --no-history
  # Drop the blobs of the intermediate configs and manifests.
  umoci gc --layout "$layout"

  # containerd names an imported image after io.containerd.image.name (ref.name alone gives
  # a nameless image under `ctr images import`).
  jq -c --arg ref "$name" --arg ctr "$ctr_name" \
    '.manifests |= map(.annotations = {"io.containerd.image.name": $ctr,
                                       "org.opencontainers.image.ref.name": $ref})' \
    "$layout/index.json" >"$dir/index.json"
  mv "$dir/index.json" "$layout/index.json"
  chmod -R u=rwX,go=rX "$layout"

  tar "${tar_opts[@]}" --owner=0 --group=0 -C "$layout" -cf "$archive.tmp" oci-layout index.json blobs
  mv -f "$archive.tmp" "$archive"
  log "$archive: $name ($(du -h "$archive" | cut -f1), layer $(du -h "$dir/layer.tar" | cut -f1) uncompressed)"
  echo "$archive $name"
}

build_image operator
build_image agent
log "done in $((SECONDS - t_start))s (linux/$ARCH, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, $created)"
