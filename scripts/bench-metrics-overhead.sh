#!/usr/bin/env bash
# Measures what collecting metrics costs the write path: the same write load (raftkv-bench run,
# 64 clients, 100-byte values) against a three-node cluster of BEFORE's raftkv and one of AFTER's,
# alternating over TRIALS, with every node of both clusters polled for GET /metrics once a second
# meanwhile, as Prometheus would scrape (ten times more often than its default); a build without
# metrics answers that poll with a 404, so both pay for the polling itself. Prints the medians.
# SCRAPE=0 polls neither (the recording alone); SCRAPE_PATH=/livez polls a trivial route.
#
#   scripts/bench-metrics-overhead.sh BEFORE_RAFTKV AFTER_RAFTKV [TRIALS]
#
# Both are release binaries; raftkv-bench is taken from the workspace's release build.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$1"; after="$2"; trials="${3:-5}"
bench="${CARGO_TARGET_DIR:-target}/release/raftkv-bench"
[ -x "$bench" ] || { echo "build raftkv-bench first: cargo build --release --workspace --bins" >&2; exit 1; }

dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftkv-overhead.XXXXXX")
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop; rm -rf "$dir"' EXIT INT TERM

# run LABEL BINARY SCRAPE: one trial; appends "LABEL ops/s p99" to $dir/results.
run() {
    local label="$1" bin="$2" scrape="$3" data="$dir/$1-$RANDOM"
    local members="1=127.0.0.1:25001,2=127.0.0.1:25002,3=127.0.0.1:25003"
    for i in 1 2 3; do
        "$bin" serve --id "$i" --listen "127.0.0.1:2500$i" --data-dir "$data/$i" --initial-cluster "$members" \
            >"$data-$i.log" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 1 100); do
        if curl -fsS http://127.0.0.1:25001/v1/status 2>/dev/null | grep -q '"leader":[0-9]'; then break; fi
        sleep 0.2
    done
    if [ "$scrape" = 1 ]; then
        (while true; do for i in 1 2 3; do curl -fsS "http://127.0.0.1:2500$i${SCRAPE_PATH:-/metrics}" >/dev/null || true; done; sleep 1; done) &
        pids+=($!)
    fi
    "$bench" run --workload write --clients 64 --duration 10 --warmup 2 \
        --endpoints http://127.0.0.1:25001,http://127.0.0.1:25002,http://127.0.0.1:25003 \
        --json "$dir/out.json" >/dev/null 2>&1
    python3 -c "import json; r=json.load(open('$dir/out.json')); print('$label', round(r['ops_per_sec']), round(r['p99_ms'], 2), r['errors'])" >>"$dir/results"
    stop
    rm -rf "$data"
}

for t in $(seq 1 "$trials"); do
    echo "bench: trial $t of $trials" >&2
    run before "$before" "${SCRAPE:-1}"
    run after "$after" "${SCRAPE:-1}"
done
python3 - "$dir/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("| build | trials | writes/s (median) | each trial | p99 ms (median) | errors |")
print("|---|---:|---:|---|---:|---:|")
for label in ("before", "after"):
    mine = [r for r in rows if r[0] == label]
    ops = [int(r[1]) for r in mine]
    p99 = [float(r[2]) for r in mine]
    print(f"| {label} | {len(mine)} | {statistics.median(ops):.0f} | {', '.join(map(str, ops))} | {statistics.median(p99):.2f} | {sum(int(r[3]) for r in mine)} |")
PY
