#!/bin/sh
# deps/lock.sh - resolve every Python dependency afresh and write the pins to CONSTRAINTS.
#
#   deps/lock.sh PYTHON [CONSTRAINTS]
#
# Builds a throwaway virtualenv, installs pip, setuptools, wheel and vipkeeper with every extra
# of pyproject.toml at the newest versions pyproject.toml allows, and writes `pip freeze` of it.
# Run it (`make lock`) after changing a dependency in pyproject.toml, and commit the result.
set -eu

python=$1
constraints=${2:-constraints.txt}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vipkeeper-lock.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

"$python" -m venv "$tmp/venv"
pip="$tmp/venv/bin/python -m pip --disable-pip-version-check"
$pip install --progress-bar off --upgrade pip setuptools wheel
extras=$("$tmp/venv/bin/python" deps/extras.py pyproject.toml)
$pip install --progress-bar off -e ".[$extras]"
{
    echo "# Every Python package the project installs, pinned: pip install -c constraints.txt ..."
    echo "# Written by \`make lock\` (deps/lock.sh) from what pyproject.toml resolves to; edit pyproject.toml,"
    echo "# not this file.  Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())')."
    $pip freeze --all --exclude-editable | LC_ALL=C sort -f
} >"$tmp/constraints.txt"
mv "$tmp/constraints.txt" "$constraints"
echo "lock: $(grep -c '==' "$constraints") pins written to $constraints"
