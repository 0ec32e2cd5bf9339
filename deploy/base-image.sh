#!/usr/bin/env bash
# A Debian bookworm base image built from Debian's packages, for a Docker engine that reaches
# no image registry:  deploy/base-image.sh [NAME]   (default convscope-base:bookworm)
#
# debootstrap --variant=minbase into a folder, then `docker import`. The root filesystem is
# kept as a tarball under build/compose/ (gitignored; CONVSCOPE_BUILD_DIR elsewhere), so a
# second import does not bootstrap again; nothing is done when the image already exists.
# Then build convscope on it:  CONVSCOPE_BASE_IMAGE=NAME docker compose build
#
# The image trusts what this machine trusts: the CA bundle named by CONVSCOPE_BUILD_CA
# (default: $PIP_CERT, if set) goes in as a local CA (/usr/local/share/ca-certificates), so
# pip inside `docker build --network host` works behind an intercepting proxy. Needs root
# and debootstrap (apt-get install debootstrap).
set -euo pipefail

name=${1:-convscope-base:bookworm}
root_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${CONVSCOPE_BUILD_DIR:-$root_dir/build/compose}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ca=${CONVSCOPE_BUILD_CA:-${PIP_CERT:-}}
tarball=$build_dir/base-bookworm.tar

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name: present"
    exit 0
fi
mkdir -p "$build_dir"

if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "base image: needs debootstrap" >&2; exit 1; }
    rootfs=$(mktemp -d "$build_dir/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    echo "base image: debootstrap --variant=minbase bookworm (about a minute)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$build_dir/debootstrap.log" 2>&1 \
        || { tail -20 "$build_dir/debootstrap.log" >&2; exit 1; }
    # The suites debian:bookworm-slim has; no package cache, no lists (like the slim image).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    if [ -n "$ca" ] && [ -s "$ca" ]; then
        mkdir -p "$rootfs/usr/local/share/ca-certificates"
        cp "$ca" "$rootfs/usr/local/share/ca-certificates/build-host.crt"
    fi
    tar -C "$rootfs" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
fi

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$tarball" "$name" >/dev/null
echo "base image $name: imported from $tarball"
