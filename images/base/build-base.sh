#!/bin/sh
# Make the base image every lab Dockerfile starts FROM, without needing a registry.
#
# Usage: build-base.sh BUILD_DIR TARGET_TAG
#   With a registry: pull debian:bookworm-slim and tag it TARGET_TAG.
#   Without one: debootstrap a minbase bookworm into BUILD_DIR/rootfs from the Debian mirror of
#   the host's own apt configuration (images/host-apt.sh; DEBIAN_MIRROR overrides it), through
#   the host's apt proxy if it has one, and `docker import` it as TARGET_TAG.
#   Never touches anything outside BUILD_DIR.
set -eu

build_dir=$1
tag=$2
suite=${DEBIAN_SUITE:-bookworm}
. "$(dirname "$0")/../host-apt.sh"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base: $tag already present"
    exit 0
fi

echo "base: looking for debian:$suite-slim in a registry (up to ${REGISTRY_TIMEOUT:-60} s)"
if docker image inspect "debian:$suite-slim" >/dev/null 2>&1 \
    || timeout "${REGISTRY_TIMEOUT:-60}" docker pull "debian:$suite-slim" >/dev/null 2>&1; then
    echo "base: using the official debian:$suite-slim"
    docker tag "debian:$suite-slim" "$tag"
    exit 0
fi

host_apt_detect
if [ -z "$apt_mirror" ]; then
    echo "base: no registry, and $(host_apt_no_mirror_message)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "base: debootstrap is missing (make deps installs it)" >&2; exit 1; }
# debootstrap downloads with wget, which takes its proxy from the environment
[ -z "$apt_http_proxy" ] || export http_proxy="${http_proxy:-$apt_http_proxy}"
[ -z "$apt_https_proxy" ] || export https_proxy="${https_proxy:-$apt_https_proxy}"

echo "base: no registry; debootstrap $suite from $apt_mirror${apt_http_proxy:+ via proxy $apt_http_proxy}"
rootfs=$build_dir/rootfs
rm -rf "$rootfs"
mkdir -p "$build_dir"
debootstrap --variant=minbase "$suite" "$rootfs" "$apt_mirror"

# The same sources the official image carries, from the same mirror, so that `apt-get` inside a
# chroot of this filesystem (fetch-debs.sh on the host) resolves packages with security updates.
[ -n "$apt_security_mirror" ] \
    || echo "base: no security mirror in the host's apt configuration (DEBIAN_SECURITY_MIRROR): packages come without security updates" >&2
host_apt_write_sources "$rootfs" "$suite"
# Like the slim image: no docs, no caches, no package lists.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
: >"$rootfs/etc/resolv.conf"
echo "base: importing the root filesystem into Docker"
tar --numeric-owner -C "$rootfs" -c . \
    | docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$tag"
rm -rf "$rootfs"
echo "base: built $tag"
