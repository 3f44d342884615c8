#!/bin/sh
# Make the base image every lab Dockerfile starts FROM, without needing a registry.
#
# Usage: build-base.sh BUILD_DIR TARGET_TAG
#   With a registry: pull debian:bookworm-slim and tag it TARGET_TAG.
#   Without one: debootstrap a minbase bookworm into BUILD_DIR/rootfs from the Debian mirror
#   and `docker import` it as TARGET_TAG.  Never touches anything outside BUILD_DIR.
set -eu

build_dir=$1
tag=$2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base: $tag already present"
    exit 0
fi

if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || timeout 60 docker pull debian:bookworm-slim >/dev/null 2>&1; then
    echo "base: using the official debian:bookworm-slim"
    docker tag debian:bookworm-slim "$tag"
    exit 0
fi

echo "base: no registry; building $tag with debootstrap from $mirror"
command -v debootstrap >/dev/null || { echo "base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
rootfs=$build_dir/rootfs
rm -rf "$rootfs"
mkdir -p "$build_dir"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"

# The same sources the official image carries, so that `apt-get` inside a chroot of this
# filesystem (used by fetch-debs.sh on the host) resolves packages with security updates.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
# Like the slim image: no docs, no caches, no package lists.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
: >"$rootfs/etc/resolv.conf"
tar --numeric-owner -C "$rootfs" -c . \
    | docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$tag"
rm -rf "$rootfs"
echo "base: built $tag"
