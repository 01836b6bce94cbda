#!/usr/bin/env bash
# Brings up the example three-node raftkv cluster on loopback (ports 7001-7003) in the foreground.
# Ctrl-C stops it. Extra arguments go to `raftkv cluster` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p raftkv-node --bin raftkv
exec "${CARGO_TARGET_DIR:-target}/release/raftkv" cluster "$@"
