#!/usr/bin/env bash
# Runs everything CI runs: formatting, lints, the full test suite (unit, storage, HTTP, real
# multi-process cluster scenarios), examples and docs. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step() { echo "=== $*" >&2; }

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "build binaries (the scenario tests run the real raftkv binary)"
cargo build --locked --workspace --bins --examples

step "tests"
cargo test --locked --workspace --no-fail-fast

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps
