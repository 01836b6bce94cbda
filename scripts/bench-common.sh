# Shared by the benchmark scripts (sourced): installs etcd-server from Debian if it is missing,
# and `ready URL` waits until URL answers.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v etcd >/dev/null 2>&1; then
    echo "bench: installing etcd-server" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    # Debian starts a system etcd on the default ports; the benchmarks run their own.
    as_root systemctl disable --now etcd >/dev/null 2>&1 || true
fi

# Waits until URL answers (20 s at most); on failure keeps the data directory `$dir` for its logs.
ready() {
    for _ in $(seq 1 100); do
        if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "bench: $1 did not come up; logs in $dir" >&2
    trap - EXIT
    return 1
}
