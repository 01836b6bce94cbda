#!/usr/bin/env bash
# Writes with slow follower disks, raftkv beside etcd: each member's data on a raftkv-faultfs disk
# of its own (FUSE: run as root), no, one and two followers whose every fsync answers late, the
# same closed-loop write load (16 clients at the leader, 100-byte values). Prints a markdown table.
# Arguments go to `raftkv-bench slow-disk` (e.g. --delay 1s --duration-secs 20 --json out.json).
# Installs etcd-server from Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

. scripts/bench-common.sh

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: the slow disks are FUSE mounts: run as root" >&2
    exit 1
fi
# The whole workspace, always: building a subset unifies features differently and would compile
# RocksDB again.
cargo build --release --locked --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"
echo "bench: etcd $(etcd --version | head -1 | awk '{print $3}'), raftkv $("$bin/raftkv" --version | awk '{print $2}')" >&2
"$bin/raftkv-bench" slow-disk --raftkv-bin "$bin/raftkv" --etcd-bin "$(command -v etcd)" "$@"
