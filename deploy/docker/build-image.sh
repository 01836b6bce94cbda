#!/usr/bin/env bash
# Builds raftkv's container image without any registry: FROM scratch, with a raftkv binary built
# here, the shared libraries it links (as ldd lists them), a non-root user and a data directory.
# The image behaves as deploy/docker/Dockerfile's does.
#
#   deploy/docker/build-image.sh [--binary PATH] [--tag TAG]
#
# --binary defaults to target/release/raftkv (built first if missing); --tag to raftkv:local.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=""
tag="raftkv:local"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--tag TAG]" >&2; exit 2 ;;
    esac
done
if [ -z "$binary" ]; then
    target="${CARGO_TARGET_DIR:-target}"
    binary="$target/release/raftkv"
    if [ ! -x "$binary" ]; then
        echo "build-image: building $binary" >&2
        cargo build --release --locked --bin raftkv
    fi
fi
[ -x "$binary" ] || { echo "build-image: $binary is not an executable" >&2; exit 1; }

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc" "$context/rootfs/tmp" "$context/owned/data"
cp "$binary" "$context/rootfs/usr/local/bin/raftkv"
# The dynamic loader and every library the binary links, at the paths it looks for them.
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
    mkdir -p "$context/rootfs$(dirname "$lib")"
    cp -L "$lib" "$context/rootfs$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nraftkv:x:10001:10001:raftkv:/data:/sbin/nologin\n' > "$context/rootfs/etc/passwd"
printf 'root:x:0:\nraftkv:x:10001:\n' > "$context/rootfs/etc/group"
printf 'hosts: files dns\n' > "$context/rootfs/etc/nsswitch.conf"
chmod 1777 "$context/rootfs/tmp"

# The run-time settings (user, volume, ports, health check, entry point) are the Dockerfile's own,
# from its USER line on: one source for both images.
{
    printf 'FROM scratch\nCOPY --chown=0:0 rootfs/ /\n'
    printf '# The data directory belongs to the user the node runs as (a named volume starts as a copy).\n'
    printf 'COPY --chown=10001:10001 owned/ /\n'
    sed -n '/^USER /,$p' deploy/docker/Dockerfile
} > "$context/Dockerfile"
grep -q '^HEALTHCHECK' "$context/Dockerfile" || { echo "build-image: no run-time settings in deploy/docker/Dockerfile" >&2; exit 1; }
# (The legacy builder's deprecation notice is noise here: FROM scratch needs nothing else.)
docker build --quiet --tag "$tag" "$context" 2> >(grep -v -e DEPRECATED -e "legacy builder" -e buildx -e "docs.docker.com" -e '^ *$' >&2) >/dev/null
echo "build-image: built $tag from $binary" >&2
