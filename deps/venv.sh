#!/bin/sh
# deps/venv.sh - make the project's virtualenv: vipkeeper in editable mode with every extra of
# pyproject.toml, every package at the version constraints.txt pins.
#
#   deps/venv.sh PYTHON VENV [CONSTRAINTS]
#
# Reuses VENV when its interpreter still runs (pip then changes only what differs), and fails if
# anything got installed that CONSTRAINTS does not pin: a dependency added to pyproject.toml needs
# `make lock`.  pip, setuptools and wheel are pinned too; the editable install is built with the
# pinned setuptools (no isolated build environment to download).
set -eu

python=$1
venv=$2
constraints=${3:-constraints.txt}

if ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "venv: creating $venv with $("$python" --version 2>&1) ($python)"
    "$python" -m venv --clear "$venv"
fi
pip="$venv/bin/python -m pip --disable-pip-version-check"

extras=$("$venv/bin/python" deps/extras.py pyproject.toml)
echo "venv: installing vipkeeper[$extras] with the versions in $constraints"
$pip install --progress-bar off -c "$constraints" pip setuptools wheel
$pip install --progress-bar off -c "$constraints" --no-build-isolation -e ".[$extras]"

unpinned=$($pip freeze --exclude-editable | "$venv/bin/python" deps/extras.py --unpinned "$constraints")
if [ -n "$unpinned" ]; then
    echo "venv: installed but not pinned in $constraints: $unpinned" >&2
    echo "venv: run \`make lock\` and commit $constraints" >&2
    exit 1
fi
