#!/usr/bin/env bash
# Benchmarks raftkv against etcd on this machine, in one run, with the same workload: starts a
# three-member etcd cluster and a three-node raftkv cluster on loopback with their data on the same
# disk, runs `raftkv-bench compare` (writes with 1, 16, 64 and 256 clients, linearizable reads with
# 64; 100-byte values; systems alternated over --trials, medians reported), stops everything and
# prints a markdown table. Arguments go to `raftkv-bench compare` (e.g. --trials 5 --json out.json).
# Then, unless BENCH_RECOVERY=0, `raftkv-bench recovery` times failover and catch-up on fresh
# clusters of both systems (BENCH_RECOVERY_JSON=FILE also writes those as JSON).
# With BENCH_TLS=1 it runs the rows of BENCH_TLS_ROWS (default write:1,write:64,read:64) twice,
# on plain clusters and then on clusters with TLS on client and peer traffic (client certificates
# required by both systems); BENCH_TLS_JSON=FILE writes the TLS rows as JSON.
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

# start_clusters SCHEME [TLS_DIR]: a three-member etcd and a three-node raftkv cluster on loopback,
# plain or, with https, over TLS on client and peer traffic alike (client certificates required by
# both); sets etcd_pids and raftkv_pids.
start_clusters() {
    local scheme=$1 tls=${2:-} i
    local etcd_cluster="e1=$scheme://127.0.0.1:23801,e2=$scheme://127.0.0.1:23802,e3=$scheme://127.0.0.1:23803"
    etcd_pids=(); raftkv_pids=()
    for i in 1 2 3; do
        local etcd_tls=() raftkv_tls=()
        if [ -n "$tls" ]; then
            etcd_tls=(--cert-file "$tls/member-$i.crt" --key-file "$tls/member-$i.key" --client-cert-auth
                --trusted-ca-file "$tls/ca.crt" --peer-cert-file "$tls/member-$i.crt" --peer-key-file "$tls/member-$i.key"
                --peer-client-cert-auth --peer-trusted-ca-file "$tls/ca.crt")
            raftkv_tls=(--peer-tls-ca "$tls/ca.crt" --peer-tls-cert "$tls/member-$i.crt" --peer-tls-key "$tls/member-$i.key"
                --tls-cert "$tls/member-$i.crt" --tls-key "$tls/member-$i.key" --tls-client-ca "$tls/ca.crt" --tls-client-auth required)
        fi
        etcd --name "e$i" --data-dir "$dir/etcd-$scheme-$i" \
            --listen-client-urls "$scheme://127.0.0.1:2379$i" --advertise-client-urls "$scheme://127.0.0.1:2379$i" \
            --listen-peer-urls "$scheme://127.0.0.1:2380$i" --initial-advertise-peer-urls "$scheme://127.0.0.1:2380$i" \
            --initial-cluster "$etcd_cluster" --initial-cluster-state new --initial-cluster-token raftkv-bench \
            "${etcd_tls[@]}" >"$dir/etcd-$scheme-$i.log" 2>&1 &
        pids+=($!); etcd_pids+=($!)
        "$bin/raftkv" serve --id "$i" --listen "127.0.0.1:2400$i" --data-dir "$dir/raftkv-$scheme-$i" \
            --initial-cluster "1=127.0.0.1:24001,2=127.0.0.1:24002,3=127.0.0.1:24003" \
            "${raftkv_tls[@]}" >"$dir/raftkv-$scheme-$i.log" 2>&1 &
        pids+=($!); raftkv_pids+=($!)
    done
    local curl_tls=()
    if [ -n "$tls" ]; then curl_tls=(--cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key"); fi
    curl_args=("${curl_tls[@]}")
    for i in 1 2 3; do ready "$scheme://127.0.0.1:2379$i/health"; ready "$scheme://127.0.0.1:2400$i/v1/status"; done
    # Both clusters have a leader before measuring.
    for _ in $(seq 1 100); do
        if curl -fsS "${curl_tls[@]}" "$scheme://127.0.0.1:24001/v1/status" | grep -q '"leader":[0-9]'; then break; fi
        sleep 0.2
    done
}

stop_clusters() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

compare() {
    "$bin/raftkv-bench" compare \
        --raftkv 127.0.0.1:24001,127.0.0.1:24002,127.0.0.1:24003 \
        --etcd 127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 \
        --raftkv-pids "$(IFS=,; echo "${raftkv_pids[*]}")" --etcd-pids "$(IFS=,; echo "${etcd_pids[*]}")" \
        "$@"
}

echo "bench: etcd $(etcd --version | head -1 | awk '{print $3}'), raftkv $("$bin/raftkv" --version | awk '{print $2}'), data in $dir ($(df -h "$dir" | awk 'NR==2 {print $1}'))" >&2
if [ "${BENCH_TLS:-0}" = 1 ]; then
    # The same rows without and with TLS (client and peer traffic, client certificates required),
    # each system against itself and against the other, one after the other in this run.
    rows=(--rows "${BENCH_TLS_ROWS:-write:1,write:64,read:64}")
    "$bin/raftkv-bench" certs --dir "$dir/tls" >/dev/null
    start_clusters http
    echo "## without TLS" >&2
    compare "${rows[@]}" "$@"
    stop_clusters
    start_clusters https "$dir/tls"
    echo "## with TLS (client and peer traffic, client certificates required)" >&2
    # The arguments again, but --json (the plain rows') gives way to BENCH_TLS_JSON.
    tls_args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --json) shift 2 ;;
            --json=*) shift ;;
            *) tls_args+=("$1"); shift ;;
        esac
    done
    if [ -n "${BENCH_TLS_JSON:-}" ]; then tls_args+=(--json "$BENCH_TLS_JSON"); fi
    compare "${rows[@]}" --tls-ca "$dir/tls/ca.crt" --tls-cert "$dir/tls/client.crt" --tls-key "$dir/tls/client.key" "${tls_args[@]}"
else
    start_clusters http
    compare "$@"
fi

# Recovery runs on clusters of its own: stop the ones measured above first.
stop_clusters
if [ "${BENCH_RECOVERY:-1}" != 0 ]; then
    recovery_args=(--raftkv-bin "$bin/raftkv" --etcd-bin "$(command -v etcd)")
    if [ -n "${BENCH_RECOVERY_JSON:-}" ]; then recovery_args+=(--json "$BENCH_RECOVERY_JSON"); fi
    "$bin/raftkv-bench" recovery "${recovery_args[@]}"
fi
