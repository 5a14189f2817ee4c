#!/usr/bin/env bash
# node-load.sh ARCHIVE...: imports OCI/Docker image archives into the containerd
# of the real node (node-up.sh), namespace k8s.io, where the kubelet sees them.
# Pods must use them with imagePullPolicy: Never or IfNotPresent (no registry).
# Name images with a domain (e.g. hostrole.local/agent:0.1.0, IMAGE_PREFIX of
# images/build-oci.sh): the kubelet asks the CRI for the normalized name, and a
# name with a domain is its own normalized form. A short name is refused.
# Prints the image names, one a line.
# Env: HOSTROLE_NODE_DIR (default ${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}-node).
set -euo pipefail
ND=${HOSTROLE_NODE_DIR:-${HOSTROLE_CLUSTER_DIR:-/tmp/hostrole-cluster}-node}
CTR=(ctr --address "$ND/containerd.sock" -n k8s.io)
[[ -S $ND/containerd.sock ]] || { echo "[node-load] no containerd socket in $ND: run node-up.sh" >&2; exit 1; }
for a in "$@"; do
  before=$("${CTR[@]}" images ls -q | sort)
  "${CTR[@]}" images import "$a" >&2
  after=$("${CTR[@]}" images ls -q | sort)
  names=$(comm -13 <(echo "$before") <(echo "$after") | grep -v "^sha256:" || true)
  # Re-imports add no new name: use the names from the archive's index.
  if [[ -z $names ]]; then
    names=$(tar -xOf "$a" index.json | grep -o '"io.containerd.image.name":"[^"]*"' | cut -d'"' -f4 || true)
  fi
  for n in $names; do
    first=${n%%/*}
    if [[ $n != */* || ! ( $first == *.* || $first == *:* || $first == localhost ) ]]; then
      echo "[node-load] $n has no domain: pods could not find it; build it as e.g. hostrole.local/NAME" >&2
      exit 1
    fi
    echo "$n"
  done
done
