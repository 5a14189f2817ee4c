#!/usr/bin/env bash
# rootfs.sh BINARY DEST: lays out the final image's filesystem for one binary in DEST.
# Used by both image builds (the Dockerfile's builder stage and build-oci.sh), so the
# Docker images and the daemonless OCI archives hold the same files:
#   /<binary>                  the release binary (the ENTRYPOINT)
#   /lib/..., /lib64/...       exactly the shared libraries `ldd` reports, and the loader
#   /etc/passwd, /etc/group    root and nonroot (65532:65532), as in distroless
#   /etc/nsswitch.conf         hosts: files dns
#   /home/nonroot              0700 (the builds give it to 65532:65532)
#   /tmp                       1777
#   /etc/ssl/certs/ca-certificates.crt   the agent only: its clients may fetch https:// URLs
# No shell; the operator gets no CA bundle (see docs/decisions.md, "Images"). With
# SOURCE_DATE_EPOCH set, every mtime is set to it.
# With ROOTFS_SYSROOT set (a cross build: e.g. /usr/aarch64-linux-gnu from Debian's
# libc6-arm64-cross, for an arm64 binary built on amd64), ldd cannot run the binary: the loader
# is the binary's PT_INTERP path, and its NEEDED libraries (and theirs) are taken from
# $ROOTFS_SYSROOT/lib and laid out as Debian lays them out on that architecture,
# /lib/<multiarch>/NAME (the directory glibc searches by default there).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BINARY DEST" >&2
  exit 2
fi
bin=$1
dest=$2
[[ -x $bin ]] || { echo "rootfs.sh: $bin is not an executable" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest"/etc "$dest"/tmp "$dest"/home/nonroot
install -m 0755 "$bin" "$dest/$(basename "$bin")"

# Shared libraries: "name => /path (addr)" lines, plus the loader as "/path (addr)".
# linux-vdso has no file. Each is copied (symlinks resolved) to the path ldd reports,
# which the loader searches by default, so no ld.so.cache is needed.
native_libs() {
  local ldd_out
  ldd_out=$(ldd "$bin")
  if grep -q 'not found' <<<"$ldd_out"; then
    echo "rootfs.sh: unresolved libraries for $bin:" >&2
    echo "$ldd_out" >&2
    exit 1
  fi
  mapfile -t libs < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
  if ((${#libs[@]} == 0)); then
    echo "rootfs.sh: ldd found no libraries (a static binary needs no loader; check $bin)" >&2
    exit 1
  fi
  for lib in "${libs[@]}"; do
    install -D -m "$(stat -L -c %a "$lib")" "$lib" "$dest$lib"
  done
}

# Cross: the loader from PT_INTERP, NEEDED names resolved in $ROOTFS_SYSROOT/lib, transitively.
cross_libs() {
  local sysroot=$ROOTFS_SYSROOT multiarch interp name file
  [[ -d $sysroot/lib ]] || { echo "rootfs.sh: ROOTFS_SYSROOT=$sysroot has no lib/" >&2; exit 1; }
  multiarch=$(basename "$sysroot")
  interp=$(readelf -l "$bin" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
  [[ -n $interp ]] || { echo "rootfs.sh: $bin has no program interpreter (static?)" >&2; exit 1; }
  [[ -e $sysroot/lib/$(basename "$interp") ]] || { echo "rootfs.sh: no $(basename "$interp") in $sysroot/lib" >&2; exit 1; }
  install -D -m 0755 "$(readlink -f "$sysroot/lib/$(basename "$interp")")" "$dest$interp"
  local -a todo=("$bin")
  local -A seen=()
  while ((${#todo[@]})); do
    file=${todo[0]}
    todo=("${todo[@]:1}")
    for name in $(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [[ -n ${seen[$name]:-} || $name == "$(basename "$interp")" ]] && continue
      seen[$name]=1
      [[ -e $sysroot/lib/$name ]] || { echo "rootfs.sh: $name (needed by $file) is not in $sysroot/lib" >&2; exit 1; }
      install -D -m 0755 "$(readlink -f "$sysroot/lib/$name")" "$dest/lib/$multiarch/$name"
      todo+=("$sysroot/lib/$name")
    done
  done
  ((${#seen[@]})) || { echo "rootfs.sh: $bin needs no shared library (check it)" >&2; exit 1; }
}

if [[ -n ${ROOTFS_SYSROOT:-} ]]; then
  cross_libs
else
  native_libs
fi

cat >"$dest/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$dest/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
echo 'hosts: files dns' >"$dest/etc/nsswitch.conf"
if [[ $(basename "$bin") == hostrole-agent ]]; then
  bundle=/etc/ssl/certs/ca-certificates.crt
  [[ -f $bundle ]] || { echo "rootfs.sh: $bundle is missing (install ca-certificates)" >&2; exit 1; }
  install -D -m 0644 "$bundle" "$dest$bundle"
fi
chmod 0644 "$dest"/etc/passwd "$dest"/etc/group "$dest"/etc/nsswitch.conf
# Modes do not depend on the umask: directories 0755, but /tmp 1777 and the home 0700.
find "$dest" -type d -exec chmod 0755 {} +
chmod 1777 "$dest/tmp"
chmod 0700 "$dest/home/nonroot"

if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
  find "$dest" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
fi
