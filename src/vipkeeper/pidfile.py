"""Pidfile handling: refuse to start next to a live daemon, never next to a dead one's file.

A pidfile left by a crashed run names a process that no longer exists (or has been reused by an
unrelated program); neither may stop the start. Plain `os` calls: pathlib is not worth its
import before the election (bench/startup.py).
"""

from __future__ import annotations

import contextlib
import os


class AlreadyRunning(RuntimeError):
    pass


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _is_live_vipkeeper(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        cmdline = _read(f"/proc/{pid}/cmdline")
    except OSError:
        return False
    return b"vipkeeper" in cmdline


def acquire(path: str) -> None:
    """Write our pid to `path`; raise AlreadyRunning if a live vipkeeper owns it."""
    try:
        text = _read(path).decode(errors="replace").strip()
    except FileNotFoundError:
        text = ""
    if text.isdigit() and _is_live_vipkeeper(int(text)):
        raise AlreadyRunning(f"{path}: vipkeeper is already running as pid {text}")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def release(path: str) -> None:
    with contextlib.suppress(OSError):
        if _read(path).decode(errors="replace").strip() == str(os.getpid()):
            os.unlink(path)
