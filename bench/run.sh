#!/usr/bin/env bash
# Runs one benchmark or all of them: bench/run.sh [web|file|mail|imap|outbound|agent|operator|p2p|p2p-limits|p2p-scale|index|all].
# Each prints its figures and appends rows to bench/results.md. BENCH_QUICK=1 shrinks every
# load to a smoke run. See bench/README.md for the knobs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ALL=(web file mail imap outbound chat radio p2p p2p-limits p2p-scale index agent operator view)

usage() { echo "usage: $0 [${ALL[*]}|all]" >&2; exit 2; }

main() {
  local what=${1:-all} b failed=()
  [[ $(id -u) == 0 ]] || { echo "run as root (installs Debian packages, runs Postfix)" >&2; exit 1; }
  if [[ $what == all ]]; then
    for b in "${ALL[@]}"; do
      echo "== $b" >&2
      bash "$HERE/$b.sh" || failed+=("$b")
    done
    if ((${#failed[@]})); then echo "failed: ${failed[*]}" >&2; exit 1; fi
    return 0
  fi
  [[ -f $HERE/$what.sh && " ${ALL[*]} " == *" $what "* ]] || usage
  exec bash "$HERE/$what.sh"
}

main "$@"
