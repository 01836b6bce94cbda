#!/usr/bin/env bash
# Linearizable read throughput by read preference and replica count, beside etcd, in one run:
# starts a three-node raftkv cluster and a three-member etcd cluster on loopback, measures
# `raftkv-bench run --workload read` at 64 clients with --read-preference leader and any, adds two
# learners to raftkv and measures both again, then etcd's linearizable reads spread over its
# members; prints a markdown table. BENCH_SECONDS (default 10) sets each run's measured time.
# BENCH_NODE_CPU=0.25 (root only) caps every raftkv node at that fraction of a core, in a cgroup of
# its own: members with machines of their own, of equal capacity, on one machine, where read
# capacity by replica count can show. Installs etcd-server from Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

. scripts/bench-common.sh

cargo build --release --locked --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"
seconds="${BENCH_SECONDS:-10}"

dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftkv-read-bench.XXXXXX")
pids=()
cgroups=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for cg in "${cgroups[@]}"; do rmdir "$cg" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Caps process $2 (raftkv node $1) at BENCH_NODE_CPU of a core, if set (cgroup v1 or v2).
limit_cpu() {
    [ -n "${BENCH_NODE_CPU:-}" ] || return 0
    local quota cg
    quota=$(awk -v f="$BENCH_NODE_CPU" 'BEGIN {printf "%d", f * 100000}')
    if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_period_us ]; then
        cg=/sys/fs/cgroup/cpu/raftkv-bench-$1
        mkdir -p "$cg"
        echo 100000 >"$cg/cpu.cfs_period_us"
        echo "$quota" >"$cg/cpu.cfs_quota_us"
    else
        cg=/sys/fs/cgroup/raftkv-bench-$1
        mkdir -p "$cg"
        echo "$quota 100000" >"$cg/cpu.max"
    fi
    echo "$2" >"$cg/cgroup.procs"
    cgroups+=("$cg")
}

raftkv_cluster="1=127.0.0.1:24101,2=127.0.0.1:24102,3=127.0.0.1:24103"
for i in 1 2 3; do
    "$bin/raftkv" serve --id "$i" --listen "127.0.0.1:2410$i" --data-dir "$dir/raftkv-$i" \
        --initial-cluster "$raftkv_cluster" >"$dir/raftkv-$i.log" 2>&1 &
    pids+=($!)
    limit_cpu "$i" $!
done
etcd_cluster="e1=http://127.0.0.1:23811,e2=http://127.0.0.1:23812,e3=http://127.0.0.1:23813"
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$dir/etcd-$i" \
        --listen-client-urls "http://127.0.0.1:2378$i" --advertise-client-urls "http://127.0.0.1:2378$i" \
        --listen-peer-urls "http://127.0.0.1:2381$i" --initial-advertise-peer-urls "http://127.0.0.1:2381$i" \
        --initial-cluster "$etcd_cluster" --initial-cluster-state new --initial-cluster-token raftkv-read-bench \
        >"$dir/etcd-$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do ready "http://127.0.0.1:2410$i/v1/status"; ready "http://127.0.0.1:2378$i/health"; done
for _ in $(seq 1 100); do
    if curl -fsS http://127.0.0.1:24101/v1/status | grep -q '"leader":[0-9]'; then break; fi
    sleep 0.2
done

voters="http://127.0.0.1:24101,http://127.0.0.1:24102,http://127.0.0.1:24103"
raftkv_pids=("${pids[@]:0:3}")
rows=()
cpu_rows=()
# CPU time (user + system, in clock ticks) of process $1.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
measure() { # LABEL ARGS...: one run; keeps its table row and each raftkv node's CPU use
    local label=$1; shift
    local before=() row pid i=0 cpu=""
    for pid in "${raftkv_pids[@]}"; do before+=("$(ticks "$pid")"); done
    local started=$SECONDS
    row=$("$bin/raftkv-bench" run --workload read --clients 64 --duration "$seconds" --warmup 2 "$@" | grep '^| \(raftkv\|etcd\) ')
    local elapsed=$((SECONDS - started))
    rows+=("| $label ${row#| }")
    for pid in "${raftkv_pids[@]}"; do
        # Percent of one core over the run, warm-up included.
        cpu+="$(( ($(ticks "$pid") - before[i]) * 100 / ($(getconf CLK_TCK) * (elapsed > 0 ? elapsed : 1)) ))% "
        i=$((i + 1))
    done
    cpu_rows+=("| $label | $cpu|")
    echo "bench: $label done" >&2
}

measure "3 voters, leader" --endpoints "$voters" --read-preference leader
measure "3 voters, any" --endpoints "$voters" --read-preference any

for i in 4 5; do
    "$bin/raftkv" serve --id "$i" --listen "127.0.0.1:2410$i" --data-dir "$dir/raftkv-$i" \
        --join "$voters" >"$dir/raftkv-$i.log" 2>&1 &
    pids+=($!)
    raftkv_pids+=($!)
    limit_cpu "$i" $!
done
for i in 4 5; do
    for _ in $(seq 1 150); do
        if curl -fsS "http://127.0.0.1:2410$i/v1/status" 2>/dev/null | grep -q '"role":"learner"'; then break; fi
        sleep 0.2
    done
done
sleep 2
measure "3 voters + 2 learners, leader" --endpoints "$voters" --read-preference leader
measure "3 voters + 2 learners, any" --endpoints "$voters" --read-preference any
measure "etcd, 3 members (spread)" --target etcd --endpoints 127.0.0.1:23781,127.0.0.1:23782,127.0.0.1:23783

echo "| setup | system | workload | clients | ops/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${rows[@]}"; do echo "$row"; done
echo
echo "CPU of each raftkv node during each run (percent of one core; nodes 1-3, then the learners)${BENCH_NODE_CPU:+; each capped at $BENCH_NODE_CPU of a core}:"
echo "| setup | CPU |"
echo "|---|---|"
for row in "${cpu_rows[@]}"; do echo "$row"; done
echo "leader: node $(curl -fsS http://127.0.0.1:24101/v1/status | sed -n 's/.*\"leader\":\([0-9]*\).*/\1/p')"
