#!/usr/bin/env bash
# node-image.sh: builds a kind node image from Debian packages and Go modules only (no image
# registry, no `kind build node-image`, which fetches images from registries), once per recipe,
# into the running Docker engine (e2e/kind/engine.sh up). Root only (debootstrap, chroot).
#
#   hostrole.local/kind-node:<Kubernetes version>-<recipe hash>
#
# The tag changes with the Kubernetes version (e2e/cluster/tools/go.mod), the versions in
# versions.env and every file of this recipe, so a warm run only checks that the image exists.
# What is in it (kind's own base image, rebuilt from Debian bookworm):
#   - debootstrap'ed Debian with systemd, containerd 1.6 and runc, CNI plugins (ptp,
#     host-local, portmap), iptables/nftables/ipset; kind's images/base/files (entrypoint,
#     containerd config, kubelet units) from the kind module, adapted: Debian's containerd path,
#     no fuse-overlayfs, restrict_oom_score_adj (no CAP_SYS_RESOURCE here), our pause image;
#   - kubeadm, kubelet, kubectl (e2e/cluster/build.sh's cache, kubeadm built beside them),
#     crictl; /kind/version; the CNI and storage manifests kind applies (node/default-cni.yaml:
#     kindnet routes + kube-router as NetworkPolicy enforcer; kind's local-path manifest);
#   - in containerd's store, every image kubeadm asks for and those manifests name, under
#     those names: pause and CoreDNS as small images, the rest one Debian "tools" image with
#     kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd, kube-router,
#     local-path-provisioner, kubectl and kindnet.sh.
#
# stdout: one line, NODE_IMAGE=...; progress on stderr. With --prepare: no Docker engine needed,
# nothing on stdout; only the cached parts (binaries, the debootstrap'ed base) are made.
# Environment: HOSTROLE_CACHE_DIR (~/.cache/hostrole), DEBIAN_MIRROR (deb.debian.org),
# HOSTROLE_KIND_REBUILD=1 (build even if the image exists).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${HOSTROLE_CACHE_DIR:-$HOME/.cache/hostrole}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf '[kind-node] %s\n' "$*" >&2; }
# shellcheck source=versions.env
. "$HERE/versions.env"
export GOTOOLCHAIN=local

K8S_VER=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "$ROOT/e2e/cluster/tools/go.mod")
[[ -n $K8S_VER ]] || { log "cannot read the Kubernetes version from e2e/cluster/tools/go.mod"; exit 1; }
recipe=$(cat "$HERE/node-image.sh" "$HERE/versions.env" "$HERE"/node/* "$HERE/tools/coredns/main.go" \
  "$ROOT/e2e/cluster/tools/go.mod" "$ROOT/e2e/cluster/tools/coredns/go.mod" | sha256sum | cut -c1-10)
NODE_IMAGE=hostrole.local/kind-node:$K8S_VER-$recipe
# --prepare: only what needs no Docker engine (the Go binaries and the debootstrap'ed base, both
# cached), so that e2e/prebuild.sh can do it while the cargo stages run; no image is made.
PREPARE=0
[[ ${1:-} == --prepare ]] && PREPARE=1
if [[ $PREPARE == 0 && ${HOSTROLE_KIND_REBUILD:-0} != 1 ]] && docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  log "$NODE_IMAGE is built"
  echo "NODE_IMAGE=$NODE_IMAGE"
  exit 0
fi
[[ $(id -u) == 0 ]] || { log "building the node image needs root (debootstrap, chroot)"; exit 1; }
t_start=$SECONDS

# --- host tools ------------------------------------------------------------------------------
pkgs=()
for p in debootstrap containerd jq; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if ((${#pkgs[@]})); then
  log "installing ${pkgs[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# --- binaries (cached by version) ------------------------------------------------------------
eval "$(HOSTROLE_BUILD_NODE=1 bash "$ROOT/e2e/cluster/build.sh")"
# goinstall NAME VERSION PACKAGE: go install PACKAGE@VERSION into $CACHE/NAME-VERSION/bin.
goinstall() {
  local bin=$CACHE/$1-$2/bin
  if [[ ! -x $bin/$1 ]]; then
    log "building $1 $2"
    (cd /tmp && CGO_ENABLED=0 GOBIN=$bin.tmp go install -trimpath -ldflags "-s -w" "$3@$2") >&2
    mkdir -p "$bin" && mv -f "$bin.tmp/$1" "$bin/$1" && rm -rf "$bin.tmp"
  fi
  echo "$bin/$1"
}
CRICTL=$(goinstall crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl)
KUBE_ROUTER=$(goinstall kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
LPP=$(goinstall local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner)

# modbuild SRC_MODDIR OUT PKG LDFLAGS [MAIN_GO]: go build PKG in a copy of a pinned module
# (so that -mod=mod may add go.sum lines without touching the repository).
modbuild() {
  local src=$1 out=$2 pkg=$3 ldflags=$4 main=${5:-} dir
  [[ -x $out ]] && return 0
  dir=$(mktemp -d)
  cp "$src/go.mod" "$src/go.sum" "$dir/"
  [[ -n $main ]] && cp "$main" "$dir/main.go"
  log "building $(basename "$out") ($pkg)"
  (cd "$dir" && go build -mod=mod -p 2 -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") >&2
  mv -f "$out.tmp" "$out"
  rm -rf "$dir"
}
minor=${K8S_VER#v1.}
minor=${minor%%.*}
K8S_LDFLAGS=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $p.gitVersion=$K8S_VER -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
modbuild "$ROOT/e2e/cluster/tools" "$K8S_BIN/kubeadm" k8s.io/kubernetes/cmd/kubeadm "$K8S_LDFLAGS"
COREDNS_VER=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3; exit}' "$ROOT/e2e/cluster/tools/coredns/go.mod")
COREDNS_KIND=$CACHE/coredns-kind-$COREDNS_VER-$(sha256sum "$HERE/tools/coredns/main.go" | cut -c1-8)/bin/coredns
mkdir -p "$(dirname "$COREDNS_KIND")"
modbuild "$ROOT/e2e/cluster/tools/coredns" "$COREDNS_KIND" . \
  "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VER" "$HERE/tools/coredns/main.go"
KIND_SRC=$(cd /tmp && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
[[ -d $KIND_SRC/images/base/files ]] || { log "no images/base/files in $KIND_SRC"; exit 1; }

packages=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod
packages+=,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,socat,containerd,runc
packages+=,containernetworking-plugins,ipset,libcap2-bin
# The debootstrap'ed tree is cached (a tarball per suite and package list): it is the slow,
# network-bound part (~3 min alone, much longer on a busy machine).
base_tar=$CACHE/kind-base-$DEBIAN_SUITE-$(printf '%s' "$packages" | sha256sum | cut -c1-10).tar
if [[ $PREPARE == 1 && -s $base_tar ]]; then
  log "prepared: binaries and $base_tar are cached"
  exit 0
fi

work=$(mktemp -d /var/tmp/hostrole-kind-node.XXXXXX)
cleanup() {
  [[ -n ${ctrd_pid:-} ]] && kill "$ctrd_pid" 2>/dev/null && wait "$ctrd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- Debian base ------------------------------------------------------------------------------
base=$work/base
if [[ ! -s $base_tar ]]; then
  log "debootstrap $DEBIAN_SUITE"
  t=$SECONDS
  debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$base" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$base"/var/cache/apt/archives/*.deb "$base"/var/lib/apt/lists/*
  mkdir -p "$CACHE"
  tar --numeric-owner --xattrs -C "$base" -cf "$base_tar.tmp" .
  mv -f "$base_tar.tmp" "$base_tar"
  log "debootstrap done in $((SECONDS - t))s: $base_tar"
else
  mkdir -p "$base"
  tar --numeric-owner --xattrs -C "$base" -xpf "$base_tar"
fi
if [[ $PREPARE == 1 ]]; then
  log "prepared: binaries and $base_tar are cached"
  exit 0
fi

# --- component images ---------------------------------------------------------------------------
# One Debian "tools" image (a copy of the base: kube-proxy and kube-router need iptables, ipset,
# conntrack; local-path's helper pods need a shell) with every component binary.
tools=$work/tools
cp -a "$base" "$tools"
install -m 0755 "$K8S_BIN"/kube-apiserver "$K8S_BIN"/kube-controller-manager "$K8S_BIN"/kube-scheduler \
  "$K8S_BIN"/kube-proxy "$K8S_BIN"/kubectl "$ETCD_BIN"/etcd "$KUBE_ROUTER" "$LPP" \
  "$HERE/node/kindnet.sh" "$HERE/node/kube-router-start.sh" "$tools/usr/local/bin/"
images=$work/images
mkdir -p "$images" "$work/pause/bin" "$work/coredns"
TOOLS_IMAGE=hostrole.local/kind-tools:$K8S_VER-$recipe
SOURCE_DATE_EPOCH=0 bash "$ROOT/e2e/cluster/node-image.sh" "$images/tools.tar" "$TOOLS_IMAGE" "$tools" /bin/sh
cp "$PAUSE_BIN/pause" "$work/pause/pause"
SOURCE_DATE_EPOCH=0 bash "$ROOT/e2e/cluster/node-image.sh" "$images/pause.tar" hostrole.local/kind-pause:dev "$work/pause" /pause
cp "$COREDNS_KIND" "$work/coredns/coredns"
for lib in $(ldd "$COREDNS_KIND" 2>/dev/null | grep -o '/[^ ]*' || true); do
  mkdir -p "$work/coredns$(dirname "$lib")" && cp -L "$lib" "$work/coredns$lib"
done
mkdir -p "$work/coredns/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$work/coredns/etc/ssl/certs/"
SOURCE_DATE_EPOCH=0 bash "$ROOT/e2e/cluster/node-image.sh" "$images/coredns.tar" hostrole.local/kind-coredns:dev "$work/coredns" /coredns

# --- the node ------------------------------------------------------------------------------------
node=$base
files=$KIND_SRC/images/base/files
install -d -m 0755 "$node/kind" "$node/kind/bin" "$node/kind/manifests" "$node/etc/containerd" \
  "$node/etc/kubernetes/manifests" "$node/etc/systemd/system/kubelet.service.d" "$node/opt/cni"
install -m 0755 "$files"/usr/local/bin/* "$node/usr/local/bin/"
install -m 0755 "$files"/kind/bin/* "$node/kind/bin/"
install -m 0644 "$files"/etc/crictl.yaml "$node/etc/"
install -m 0644 "$files"/etc/default/* "$node/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$node/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$node/etc/systemd/system/"
rm -f "$node/etc/systemd/system/containerd-fuse-overlayfs.service"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$node/etc/systemd/system/kubelet.service.d/"
# containerd: Debian's binary, no fuse-overlayfs proxy (rootless only), no oom_score_adj below
# ours (no CAP_SYS_RESOURCE), our pause image.
sed -i 's|^ExecStart=.*|ExecStart=/usr/bin/containerd|' "$node/etc/systemd/system/containerd.service"
awk '/^\[proxy_plugins/ {skip = 1; next} /^\[/ {skip = 0} !skip' "$files/etc/containerd/config.toml" |
  sed -e 's|^\( *sandbox_image = \).*|\1"hostrole.local/kind-pause:dev"|' \
      -e 's|^\( *restrict_oom_score_adj = \).*|\1true|' >"$node/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$node/etc/containerd/config.toml" || { log "containerd config: restrict_oom_score_adj not set"; exit 1; }
chroot "$node" ctr oci spec |
  jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' >"$node/etc/containerd/cri-base.json"
# CNI plugins: Debian's live in /usr/lib/cni; kubelet/containerd look in /opt/cni/bin.
ln -sfn /usr/lib/cni "$node/opt/cni/bin"
# kind's systemd trimming (images/base/Dockerfile).
find "$node/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$node"/lib/systemd/system/multi-user.target.wants/* "$node"/etc/systemd/system/*.wants/* \
  "$node"/lib/systemd/system/local-fs.target.wants/* "$node"/lib/systemd/system/sockets.target.wants/*udev* \
  "$node"/lib/systemd/system/sockets.target.wants/*initctl* "$node"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$node/etc/systemd/journald.conf"
chroot "$node" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$node" systemctl mask systemd-binfmt.service >/dev/null 2>&1
# Kubernetes.
install -m 0755 "$K8S_BIN/kubeadm" "$K8S_BIN/kubelet" "$K8S_BIN/kubectl" "$node/usr/bin/"
install -m 0755 "$CRICTL" "$node/usr/local/bin/crictl"
printf '%s' "$K8S_VER" >"$node/kind/version"
sed "s|@TOOLS_IMAGE@|$TOOLS_IMAGE|g" "$HERE/node/default-cni.yaml" >"$node/kind/manifests/default-cni.yaml"
# kind's local-path manifest (a Go constant in the kind module), with its two image constants.
storage_go=$KIND_SRC/pkg/build/nodeimage/const_storage.go
lpp_image=$(sed -n 's/^const storageProvisionerImage = "\(.*\)"$/\1/p' "$storage_go")
helper_image=$(sed -n 's/^const storageHelperImage = "\(.*\)"$/\1/p' "$storage_go")
[[ -n $lpp_image && -n $helper_image ]] || { log "cannot read the storage images from $storage_go"; exit 1; }
sed -n '/^const defaultStorageManifest = `/,/^`/p' "$storage_go" | sed '1d;$d' |
  sed -e "s|\` + storageProvisionerImage + \`|$lpp_image|g" -e "s|\` + storageHelperImage + \`|$helper_image|g" \
  >"$node/kind/manifests/default-storage.yaml"
grep -q "image: $lpp_image" "$node/kind/manifests/default-storage.yaml" || { log "storage manifest not extracted"; exit 1; }

# --- images into the node's containerd store (a containerd on this host, on the node's root) -----
mkdir -p "$work/ctrd"
cat >"$work/ctrd/config.toml" <<EOF
version = 2
root = "$node/var/lib/containerd"
state = "$work/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/ctrd/sock"
EOF
containerd --config "$work/ctrd/config.toml" >"$work/ctrd/log" 2>&1 &
ctrd_pid=$!
for ((i = 0; i < 60; i++)); do ctr --address "$work/ctrd/sock" version >/dev/null 2>&1 && break; sleep 0.5; done
ctr_() { ctr --address "$work/ctrd/sock" -n k8s.io "$@"; }
for a in tools pause coredns; do
  ctr_ images import --no-unpack "$images/$a.tar" >&2
done
tag() { ctr_ images tag --force "$1" "$2" >/dev/null; }
for img in $("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VER" 2>/dev/null); do
  case $img in
    */pause:*) tag hostrole.local/kind-pause:dev "$img" ;;
    */coredns:*) tag hostrole.local/kind-coredns:dev "$img" ;;
    *) tag "$TOOLS_IMAGE" "$img" ;;
  esac
  log "image $img"
done
tag "$TOOLS_IMAGE" "$lpp_image"
tag "$TOOLS_IMAGE" "$helper_image"
# The provisioner image runs `local-path-provisioner ...` from PATH; its helper pods `sh`.
ctr_ images ls -q >&2
kill "$ctrd_pid"; wait "$ctrd_pid" 2>/dev/null || true
ctrd_pid=

# --- the image ---------------------------------------------------------------------------------
log "docker import $NODE_IMAGE"
# `docker import` takes no STOPSIGNAL (systemd stops on SIGRTMIN+3): a one-line legacy build adds it.
tar --numeric-owner --xattrs -C "$node" -c . |
  docker import \
    --change 'ENV container=docker' \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    - "$NODE_IMAGE-rootfs" >/dev/null
mkdir -p "$work/final"
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$NODE_IMAGE-rootfs" >"$work/final/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$NODE_IMAGE" "$work/final" >/dev/null 2>&1 ||
  DOCKER_BUILDKIT=0 docker build -t "$NODE_IMAGE" "$work/final" >&2
docker rmi "$NODE_IMAGE-rootfs" >/dev/null
log "built $NODE_IMAGE in $((SECONDS - t_start))s ($(docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | numfmt --to=iec))"
echo "NODE_IMAGE=$NODE_IMAGE"
