#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 20) each. Installs cargo-fuzz if missing.
#
# cargo-fuzz builds with `-Zsanitizer=address`, a nightly flag; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain (the only one this project uses) accept it. Found crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-20}"
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "== $target for ${seconds}s"
    cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10
done
