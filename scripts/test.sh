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

step "one RocksDB build for every documented command (the workspace-hack crate is current)"
cargo hakari generate --diff
cargo hakari manage-deps --dry-run
# After the workspace build, the README's example and one package's tests must reuse it.
for cmd in "build --locked --example embedded" "test --locked -p raftkv --no-run"; do
    out=$(cargo $cmd 2>&1) || { echo "$out" >&2; exit 1; }
    if grep -q "Compiling librocksdb-sys" <<<"$out"; then
        echo "cargo $cmd compiled librocksdb-sys again: features differ from the workspace build" >&2
        exit 1
    fi
done

step "tests"
cargo test --locked --workspace --no-fail-fast

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps
