#!/usr/bin/env bash
# Installs what building raftkv needs on Debian or Ubuntu, skipping what is already there:
# clang and libclang-dev (RocksDB's bindings), a C++ compiler, iproute2 and nftables (the Jepsen
# harness's network namespaces), protobuf-compiler (etcd's gRPC client in the benchmark), fuse3
# (the power-loss and slow-disk filesystem's mounts), faketime (the clock-skew tests), chromium
# (the dashboard's browser test), prometheus (promtool checks the alert rules), kubernetes-validate
# (the manifests' schema check), cargo-hakari (the workspace-hack crate), and a Rust toolchain.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in clang libclang-dev g++ make pkg-config curl ca-certificates iproute2 nftables protobuf-compiler fuse3 faketime chromium prometheus; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

# cargo-hakari keeps the workspace-hack crate (one feature set for every build) current.
if ! cargo hakari --version >/dev/null 2>&1; then
    echo "setup: installing cargo-hakari" >&2
    cargo install --locked --quiet cargo-hakari
fi

# The Kubernetes manifests' schema check (tests/kubernetes.rs): the API schemas ship with the
# package, so validating needs no cluster and no network.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import kubernetes_validate" 2>/dev/null; then
    echo "setup: installing kubernetes-validate (pip)" >&2
    python3 -m pip install -q kubernetes-validate 2>&1 | grep -v "^WARNING: Running pip as the 'root' user" >&2 || true
fi
