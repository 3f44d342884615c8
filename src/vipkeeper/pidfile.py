"""Pidfile handling: refuse to start next to a live daemon, never next to a dead one's file.

A pidfile left by a crashed run names a process that no longer exists (or has been reused by an
unrelated program); neither may stop the start.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class AlreadyRunning(RuntimeError):
    pass


def _is_live_vipkeeper(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"vipkeeper" in cmdline


def acquire(path: str) -> None:
    """Write our pid to `path`; raise AlreadyRunning if a live vipkeeper owns it."""
    target = Path(path)
    try:
        text = target.read_text().strip()
    except FileNotFoundError:
        text = ""
    if text.isdigit() and _is_live_vipkeeper(int(text)):
        raise AlreadyRunning(f"{path}: vipkeeper is already running as pid {text}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(target)


def release(path: str) -> None:
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.read_text().strip() == str(os.getpid()):
            target.unlink()
