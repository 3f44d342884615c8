#!/bin/sh
# Download, on the host, every Debian package a lab image needs, so that `docker build`
# installs them with no network at all.
#
# Usage: fetch-debs.sh BASE_IMAGE ROOT_DIR OUT_DIR PACKAGE...
#   Exports BASE_IMAGE's filesystem to ROOT_DIR (once), then in a chroot of it runs
#   `apt-get install --download-only` so the package set is resolved against exactly what the
#   image already has.  The .deb files land in OUT_DIR.  chroot on the host is not docker build:
#   the network is used here, never inside a build.  The chroot's apt uses the Debian mirror and
#   the apt proxy of the host's own apt configuration (images/host-apt.sh) when the host has
#   them, else the sources the base image carries.
set -eu
. "$(dirname "$0")/host-apt.sh"

base=$1
root=$2
out=$3
shift 3

if [ ! -x "$root/usr/bin/apt-get" ]; then
    rm -rf "$root"
    mkdir -p "$root"
    cid=$(docker create "$base" true)
    trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
    docker export "$cid" | tar -C "$root" -x
    docker rm -f "$cid" >/dev/null
    trap - EXIT
fi

cp /etc/resolv.conf "$root/etc/resolv.conf"
host_apt_detect
if [ -n "$apt_mirror" ]; then
    suite=$(. "$root/etc/os-release" && echo "$VERSION_CODENAME")
    host_apt_write_sources "$root" "$suite"
    echo "debs: resolving against $apt_mirror ($suite)"
fi
proxy=$(host_apt_proxy_options)
mkdir -p "$out"
rm -f "$out"/*.deb
mkdir -p "$root/tmp/debs/partial"
rm -f "$root"/tmp/debs/*.deb
# shellcheck disable=SC2086  # $proxy is a list of options
chroot "$root" apt-get -q $proxy update
# shellcheck disable=SC2086
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y $proxy \
    --no-install-recommends --download-only \
    -o Dir::Cache::archives=/tmp/debs install "$@"
cp "$root"/tmp/debs/*.deb "$out"/
rm -f "$root"/tmp/debs/*.deb
echo "debs: $(ls "$out" | wc -l) packages in $out"
