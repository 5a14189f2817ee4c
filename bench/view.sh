#!/usr/bin/env bash
# view: the topology view at scale. GROUPS HostRoles (default 1000; quick 100) over 10
# namespaces, one host each, every tenth a web client of another, served by the view from a
# store as its watch would fill it (operator/tests/view.rs `view_at_scale`, release build), and
# loaded in headless Chromium (operator/tests/ui/view_scale.py).
# Figures:
#   first paint ms  navigation start to the end of the page's first draw (its performance
#                   marks): the page, the server-sent graph, JSON parse and SVG layout;
#   redraw ms       a redraw of the same graph (what a resize or an update costs the page).
# Peer: Graphviz (`dot -Tsvg`, Debian graphviz) drawing the same graph from `matrix --format
# dot`, in the same run: the static picture people would make instead (it has no browser, no
# network and no live updates, so it is a floor rather than a like-for-like peer).
set -euo pipefail
export BENCH_NAME=view
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GROUPS_N=${GROUPS_N:-$(quick 100 1000)}
need_pkgs chromium chromium-driver python3-selenium graphviz
tmpdir

log "cargo test --release view_at_scale ($GROUPS_N HostRoles)"
out=$(cd "$REPO" && HOSTROLE_VIEW_SCALE=$GROUPS_N HOSTROLE_VIEW_DOT=$BENCH_TMP/graph.dot \
  cargo test --release -q -p hostrole-operator --test view -- --ignored --nocapture view_at_scale 2>&1) ||
  die "the probe failed: $out"
first=$(sed -n 's/^first-paint-ms: //p' <<<"$out")
redraw=$(sed -n 's/^redraw-ms: //p' <<<"$out")
[[ -n $first && -n $redraw ]] || die "no figures in: $out"

start=$(now_ns)
dot -Tsvg "$BENCH_TMP/graph.dot" -o "$BENCH_TMP/graph.svg"
dot_ms=$(awk -v s="$(secs_since "$start")" 'BEGIN { printf "%.0f", s * 1000 }')

cmd="view_at_scale: $GROUPS_N HostRoles, 10 namespaces, headless Chromium 1600x1200; peer: dot -Tsvg of matrix --format dot"
row "first paint ms, $GROUPS_N HostRoles" "$cmd" "$first" "$dot_ms" "<1"
row "redraw ms, $GROUPS_N HostRoles" "$cmd" "$redraw" "$dot_ms" "<1"
