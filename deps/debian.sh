#!/bin/sh
# deps/debian.sh - make sure the Debian packages the project needs are installed.
#
#   deps/debian.sh [LIST_FILE...]        default: every deps/debian/*.txt
#
# A list file holds one package per line (`#` starts a comment).  Only packages dpkg does not
# report as installed are installed, and `apt-get update` runs only when there are some.  When it
# cannot install (not root, or no dpkg/apt-get) it prints the packages and the command to install
# them and exits 1: it never installs part of a list and carries on.  DEPS_DEBIAN=skip (for hosts
# where the equivalents were installed by other means) makes it check nothing.
set -eu

here=$(dirname "$0")
[ $# -gt 0 ] || set -- "$here"/debian/*.txt

if [ "${DEPS_DEBIAN:-}" = skip ]; then
    exit 0
fi

wanted=$(sed -e 's/#.*//' "$@" | tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    {
        echo "deps: this host has no dpkg/apt-get, so the Debian packages cannot be checked or installed."
        echo "deps: install the equivalents of these Debian packages (lists in $here/debian/):"
        echo "    $(echo "$wanted" | tr '\n' ' ')"
        echo "deps: then run make with DEPS_DEBIAN=skip."
    } >&2
    exit 1
fi

# shellcheck disable=SC2086  # one word per package
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $wanted 2>/dev/null \
    | awk '/ ok installed$/ { print $1 }' || true)
missing=$(printf '%s\n' $wanted | grep -vxF "$installed" | tr '\n' ' ' || true)
missing=${missing% }
[ -n "$missing" ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
    {
        echo "deps: these Debian packages are missing: $missing"
        echo "deps: install them as root, then run make again:"
        echo "    apt-get update && apt-get install -y --no-install-recommends $missing"
    } >&2
    exit 1
fi

echo "deps: installing Debian packages: $missing"
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Another apt run (a second checkout's set-up, unattended-upgrades on a freshly booted host) may
# hold the dpkg lock: wait for it rather than fail.
wait_lock="-o DPkg::Lock::Timeout=600"
# shellcheck disable=SC2086  # one word per option and per package
apt-get update -q $wait_lock
# shellcheck disable=SC2086
apt-get install -y -q -o Dpkg::Use-Pty=0 $wait_lock --no-install-recommends $missing
echo "deps: Debian packages installed in $(($(date +%s) - start)) s"
