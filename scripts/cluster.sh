#!/usr/bin/env bash
# Brings up the example three-node raftkv cluster on loopback (ports 7001-7003) in the foreground.
# Ctrl-C stops it. Extra arguments go to `raftkv cluster` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The whole workspace, always: building a subset unifies features differently and would compile
# RocksDB again.
cargo build --release --locked --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/raftkv" cluster "$@"
