"""A throwaway clone with no .venv and no build stamps gets through the set-up step, `make deps`.

The clone is of what is committed (`git clone` of this repository), in a unique temporary
directory removed even when the test fails.  Python packages come from a wheelhouse under
~/.cache/vipkeeper/ filled once per machine with `pip download` of exactly the pins in
constraints.txt, and the clone installs with no package index at all: so the test is quick after
its first run, and it also proves that constraints.txt pins everything the virtualenv needs.
Debian packages and the Compose plugin are checked by the same step (installed when missing,
which needs root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deps"))
from extras import canonical, pins  # noqa: E402

pytestmark = pytest.mark.timeout(600)

WHEELHOUSE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "vipkeeper"
    / f"wheelhouse-py{sys.version_info.major}{sys.version_info.minor}"
)


def _wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return canonical(name), version


def _fill_wheelhouse(constraints: Path) -> None:
    """Download each pinned wheel the wheelhouse lacks (none, after the first run)."""
    wanted = pins(constraints.read_text().splitlines())
    have = {_wheel_name_version(p.name) for p in WHEELHOUSE.glob("*.whl")}
    if all((name, version) in have for name, version in wanted.items()):
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
         "--progress-bar", "off", "--only-binary", ":all:", "--no-deps",
         "-r", str(constraints), "-d", str(WHEELHOUSE)],
        check=True,
    )  # fmt: skip


def _make_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


@pytest.fixture
def clone() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="vipkeeper-setup-clone-"))
    try:
        target = tmp / "vipkeeper"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _make(clone: Path, *targets: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The interpreter this suite runs on makes the clone's virtualenv: the pins are for it.
    python = getattr(sys, "_base_executable", sys.executable)
    return subprocess.run(
        ["make", "-C", str(clone), *targets, f"PYTHON={python}"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_fresh_clone_gets_through_the_setup_step_and_a_second_run_changes_nothing(
    clone: Path,
) -> None:
    assert not (clone / ".venv").exists()
    assert not (clone / "images" / ".build").exists()
    _fill_wheelhouse(clone / "constraints.txt")
    env = _make_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(WHEELHOUSE))

    first = _make(clone, "deps", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "==> virtualenv .venv: done" in first.stdout

    venv_python = clone / ".venv" / "bin" / "python"
    imported = subprocess.run(
        [str(venv_python), "-c", "import vipkeeper, sys; print(vipkeeper.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    # editable: the clone's own source, not this repository's
    assert imported.stdout.strip().startswith(str(clone / "src" / "vipkeeper"))

    frozen = subprocess.run(
        [str(venv_python), "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = pins(frozen.stdout.splitlines())
    pinned = pins((clone / "constraints.txt").read_text().splitlines())
    assert installed == pinned

    stamp = clone / ".venv" / ".installed"
    stamp_time = stamp.stat().st_mtime_ns
    second = _make(clone, "deps", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "virtualenv" not in second.stdout
    assert "deps: installing" not in second.stdout
    assert stamp.stat().st_mtime_ns == stamp_time

    # A changed pyproject.toml or constraints.txt makes the virtualenv out of date.
    for changed in (clone / "pyproject.toml", clone / "constraints.txt"):
        before = changed.stat()
        assert "deps/venv.sh" not in _make(clone, "-n", "venv", env=env).stdout
        os.utime(changed, ns=(stamp_time + 10**9, stamp_time + 10**9))
        assert "deps/venv.sh" in _make(clone, "-n", "venv", env=env).stdout
        os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))
