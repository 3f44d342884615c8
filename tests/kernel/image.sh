#!/bin/sh
# tests/kernel/image.sh - Debian's kernel for the test VM, unpacked (not installed) into a cache;
# prints the directory holding boot/vmlinuz-* and lib/modules/.
#
#   tests/kernel/image.sh CACHE META [PACKAGE]
#     CACHE    where unpacked kernels are kept (one folder per package)
#     META     the metapackage naming the current kernel (linux-image-amd64)
#     PACKAGE  a concrete package (linux-image-6.1.0-57-amd64); default: the one META depends on,
#              asked of apt-cache here, so only the kernel targets pay for the lookup
#
# Installing the package would rebuild the host's initramfs and pull in udev/systemd upgrades:
# `apt-get download` + `dpkg -x` instead, then the depmod its postinst would have run.
set -eu

cache=$1
meta=$2
package=${3:-}

if [ -z "$package" ]; then
    package=$(apt-cache depends "$meta" 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
    [ -n "$package" ] || { echo "image.sh: apt-cache knows no $meta (apt-get update?)" >&2; exit 1; }
fi
dir=$cache/$package
if [ ! -e "$dir/.unpacked" ]; then
    echo "image.sh: fetching and unpacking $package into $dir" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && apt-get download "$package" >&2)
    dpkg -x "$dir/${package}"_*.deb "$dir"
    rm -f "$dir/${package}"_*.deb
    depmod -b "$dir" "${package#linux-image-}"
    touch "$dir/.unpacked"
fi
echo "$dir"
