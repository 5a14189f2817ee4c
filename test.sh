#!/usr/bin/env bash
# Every test of the project: formatting, lints, unit tests, and the agent's role tests with
# real clients. CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")"

bash scripts/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit, CRD drift, schema and CEL rules, web role with curl)"
cargo test --locked --workspace
