#!/usr/bin/env bash
# Benchmarks raftkv against etcd on this machine, in one run, with the same workload: starts a
# three-member etcd cluster and a three-node raftkv cluster on loopback with their data on the same
# disk, runs `raftkv-bench compare` (writes with 1, 16, 64 and 256 clients, linearizable reads with
# 64; 100-byte values; systems alternated over --trials, medians reported), stops everything and
# prints a markdown table. Arguments go to `raftkv-bench compare` (e.g. --trials 5 --json out.json).
# Then, unless BENCH_RECOVERY=0, `raftkv-bench recovery` times failover and catch-up on fresh
# clusters of both systems (BENCH_RECOVERY_JSON=FILE also writes those as JSON).
# Installs etcd-server from Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

. scripts/bench-common.sh

# The whole workspace, always: building a subset unifies features differently and would compile
# RocksDB again.
cargo build --release --locked --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"

dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftkv-bench.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

etcd_cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
etcd_pids=()
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$dir/etcd-$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$etcd_cluster" --initial-cluster-state new --initial-cluster-token raftkv-bench \
        >"$dir/etcd-$i.log" 2>&1 &
    pids+=($!); etcd_pids+=($!)
done

raftkv_cluster="1=127.0.0.1:24001,2=127.0.0.1:24002,3=127.0.0.1:24003"
raftkv_pids=()
for i in 1 2 3; do
    "$bin/raftkv" serve --id "$i" --listen "127.0.0.1:2400$i" --data-dir "$dir/raftkv-$i" \
        --initial-cluster "$raftkv_cluster" >"$dir/raftkv-$i.log" 2>&1 &
    pids+=($!); raftkv_pids+=($!)
done

for i in 1 2 3; do ready "http://127.0.0.1:2379$i/health"; ready "http://127.0.0.1:2400$i/v1/status"; done
# Both clusters have a leader before measuring.
for _ in $(seq 1 100); do
    if curl -fsS http://127.0.0.1:24001/v1/status | grep -q '"leader":[0-9]'; then break; fi
    sleep 0.2
done

echo "bench: etcd $(etcd --version | head -1 | awk '{print $3}'), raftkv $("$bin/raftkv" --version | awk '{print $2}'), data in $dir ($(df -h "$dir" | awk 'NR==2 {print $1}'))" >&2
"$bin/raftkv-bench" compare \
    --raftkv http://127.0.0.1:24001,http://127.0.0.1:24002,http://127.0.0.1:24003 \
    --etcd 127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 \
    --raftkv-pids "$(IFS=,; echo "${raftkv_pids[*]}")" --etcd-pids "$(IFS=,; echo "${etcd_pids[*]}")" \
    "$@"

# Recovery runs on clusters of its own: stop the ones measured above first.
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
if [ "${BENCH_RECOVERY:-1}" != 0 ]; then
    recovery_args=(--raftkv-bin "$bin/raftkv" --etcd-bin "$(command -v etcd)")
    if [ -n "${BENCH_RECOVERY_JSON:-}" ]; then recovery_args+=(--json "$BENCH_RECOVERY_JSON"); fi
    "$bin/raftkv-bench" recovery "${recovery_args[@]}"
fi
