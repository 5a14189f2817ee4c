#!/usr/bin/env bash
# krew-manifest.sh TAG DIR: prints plugins/hostrole.yaml with {{TAG}}, {{REPO_URL}} (from the
# environment) and every {{SHA256_<os>_<arch>}} filled from DIR/kubectl-hostrole_<os>_<arch>.tar.gz.
# Fails when an archive the manifest names is missing or a placeholder is left.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: REPO_URL=https://... $0 TAG DIR" >&2; exit 2; }
tag=$1
dir=$2
[[ $tag =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "TAG must be vX.Y.Z, not $tag" >&2; exit 1; }
[[ -n ${REPO_URL:-} ]] || { echo "REPO_URL is not set" >&2; exit 1; }
template=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/plugins/hostrole.yaml
# The template's comments are for this repository; the manifest starts at apiVersion.
out=$(sed -e '/^#/d' -e "s|{{TAG}}|$tag|g" -e "s|{{REPO_URL}}|$REPO_URL|g" "$template")
mapfile -t placeholders < <(grep -o '{{SHA256_[a-z]*_[a-z0-9]*}}' <<<"$out" | sort -u)
for placeholder in "${placeholders[@]}"; do
  platform=${placeholder#\{\{SHA256_}
  platform=${platform%\}\}}
  archive=$dir/kubectl-hostrole_$platform.tar.gz
  [[ -f $archive ]] || { echo "$archive is missing (the manifest names it)" >&2; exit 1; }
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  out=${out//"$placeholder"/$sum}
done
if grep -q '{{' <<<"$out"; then
  echo "placeholders left in the manifest: $(grep -o '{{[^}]*}}' <<<"$out" | sort -u | tr '\n' ' ')" >&2
  exit 1
fi
printf '%s\n' "$out"
