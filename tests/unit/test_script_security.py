"""Scripts that cannot be trusted: keepalived's `enable_script_security` and `script_user`, and
a script that floods its output (a hanging script killed at its timeout: test_scripts.py).

With enable_script_security, a script that would run as root is refused, with the reason, when
its file or a directory above it can be changed by a user other than root (a group or world
write bit, an owner other than root). `script_user` runs scripts as that user, and then the
check does not apply. A script writing far more than the output limit leaves the runner with
the limit and no more memory than that.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipkeeper.config.load import parse_text
from vipkeeper.io.scripts import (
    ScriptRunner,
    ScriptSecurity,
    insecure_path,
    script_security,
)

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the scripts run as root here")


@pytest.fixture
def safe_dir() -> Iterator[Path]:
    """A directory only root can write, below directories only root can write (the build
    tree's parents may not be: a fresh directory under /root or /usr/local is)."""
    base = Path("/root") if os.geteuid() == 0 else Path.home()
    directory = base / f".vipkeeper-script-test-{os.getpid()}"
    directory.mkdir(mode=0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def script(directory: Path, name: str = "check.sh", mode: int = 0o755) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\necho ran\n")
    path.chmod(mode)
    return path


@ROOT_ONLY
def test_a_script_only_root_can_change_is_accepted(safe_dir: Path) -> None:
    assert insecure_path(str(script(safe_dir))) is None
    assert insecure_path("true") is None  # found on PATH: /usr/bin, root's


@ROOT_ONLY
def test_a_world_writable_script_is_refused_with_the_reason(safe_dir: Path) -> None:
    path = script(safe_dir, mode=0o757)
    assert insecure_path(str(path)) == f"{path} is writable by every user"


@ROOT_ONLY
def test_a_script_in_a_directory_a_group_can_write_is_refused(safe_dir: Path) -> None:
    shared = safe_dir / "shared"
    shared.mkdir()
    os.chown(shared, 0, 4242)
    shared.chmod(0o775)
    path = script(shared)
    assert insecure_path(str(path)) == f"{shared} is writable by group 4242"


@ROOT_ONLY
def test_a_script_owned_by_another_user_is_refused(safe_dir: Path) -> None:
    path = script(safe_dir)
    os.chown(path, 4242, 0)
    assert insecure_path(str(path)) == f"{path} belongs to uid 4242, not root"


@ROOT_ONLY
def test_a_sticky_world_writable_directory_is_refused_too(tmp_path: Path) -> None:
    # /tmp (mode 1777): anyone may create a file there, so anyone could have placed the script
    path = script(tmp_path)
    reason = insecure_path(str(path))
    assert reason is not None and "writable by every user" in reason


@ROOT_ONLY
def test_a_link_into_an_unsafe_place_is_refused(safe_dir: Path, tmp_path: Path) -> None:
    target = script(tmp_path)
    link = safe_dir / "link.sh"
    link.symlink_to(target)
    reason = insecure_path(str(link))
    assert reason is not None and "writable by every user" in reason


@ROOT_ONLY
async def test_the_runner_refuses_an_insecure_script_and_runs_a_safe_one(
    safe_dir: Path, tmp_path: Path
) -> None:
    runner = ScriptRunner(security=ScriptSecurity(enabled=True))
    unsafe = script(tmp_path)
    refused = await runner.run(str(unsafe), capture_output=True)
    assert not refused.ok
    assert refused.exit_code is None
    assert refused.error is not None and "writable by every user" in refused.error
    accepted = await runner.run(str(script(safe_dir)), capture_output=True)
    assert accepted.ok, accepted
    assert accepted.output == b"ran\n"


@ROOT_ONLY
async def test_without_script_security_the_same_script_runs(tmp_path: Path) -> None:
    result = await ScriptRunner().run(str(script(tmp_path)), capture_output=True)
    assert result.ok and result.output == b"ran\n"


@ROOT_ONLY
async def test_script_user_runs_scripts_as_that_user_and_skips_the_check(tmp_path: Path) -> None:
    runner = ScriptRunner(security=ScriptSecurity(enabled=True, user="nobody"))
    result = await runner.run(["sh", "-c", "id -u; id -g"], capture_output=True)
    nobody = pwd.getpwnam("nobody")
    assert result.ok, result
    assert result.output.decode().split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
    assert runner.refusal(str(script(tmp_path))) is None  # not root: nothing to protect


async def test_an_unknown_script_user_refuses_every_script() -> None:
    runner = ScriptRunner(security=ScriptSecurity(user="no-such-user-vk"))
    result = await runner.run("true")
    assert not result.ok
    assert result.error == "script_user 'no-such-user-vk': no such user"


def test_the_configuration_sets_script_security() -> None:
    result = parse_text(
        "global_defs {\n    enable_script_security\n    script_user nobody nogroup\n}\n"
    )
    assert result.config is not None, [d.format() for d in result.diagnostics]
    assert script_security(result.config.global_defs) == ScriptSecurity(
        enabled=True, user="nobody", group="nogroup"
    )


# Run in a fresh interpreter: this process's peak RSS may already be above what the flood adds.
FLOOD_PROBE = """
import asyncio, resource, sys
from vipkeeper.io.scripts import ScriptRunner
flood = "import sys\\nfor _ in range(3200): sys.stdout.write('x' * 65536)"  # 200 MiB
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = asyncio.run(
    ScriptRunner().run([sys.executable, "-c", flood], capture_output=True, timeout=120)
)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.exit_code, len(result.output), after - before)
"""


def test_a_script_flooding_its_output_leaves_only_the_limit_in_memory() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", FLOOD_PROBE], capture_output=True, text=True, timeout=180
    )
    assert probe.returncode == 0, probe.stderr
    exit_code, kept, grown_kib = (int(word) for word in probe.stdout.split())
    assert exit_code == 0
    assert kept == 64 * 1024  # of 200 MiB written
    assert grown_kib < 16 * 1024, f"peak RSS grew {grown_kib} KiB while 200 MiB went through"
