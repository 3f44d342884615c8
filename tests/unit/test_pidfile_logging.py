"""Pidfiles: a stale file never blocks a start, a live daemon's file does. JSON logs carry the
structured fields of a transition."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from vipkeeper import pidfile
from vipkeeper.logsetup import setup_logging


def test_stale_pidfile_of_a_dead_process_does_not_stop_the_start(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "vipkeeper.pid"
    path.write_text(f"{dead.pid}\n")
    pidfile.acquire(str(path))
    assert path.read_text().strip() == str(os.getpid())
    pidfile.release(str(path))
    assert not path.exists()


def test_pidfile_naming_an_unrelated_live_process_does_not_stop_the_start(tmp_path: Path) -> None:
    path = tmp_path / "vipkeeper.pid"
    path.write_text("1\n")  # init is alive but is not vipkeeper
    pidfile.acquire(str(path))
    assert path.read_text().strip() == str(os.getpid())


def test_pidfile_of_a_live_vipkeeper_refuses_the_start(tmp_path: Path) -> None:
    live = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "vipkeeper"],
    )
    try:
        # Popen can return before the kernel has set up the new program's arguments.
        for attempt in Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.01), reraise=True):
            with attempt:
                assert b"vipkeeper" in Path(f"/proc/{live.pid}/cmdline").read_bytes()
        path = tmp_path / "vipkeeper.pid"
        path.write_text(f"{live.pid}\n")
        with pytest.raises(pidfile.AlreadyRunning):
            pidfile.acquire(str(path))
        assert path.read_text().strip() == str(live.pid)
    finally:
        live.kill()
        live.wait()


def test_json_log_lines_carry_the_structured_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("json", "info", stream)
        logging.getLogger("vipkeeper").info(
            "VI_1: BACKUP -> MASTER", extra={"instance": "VI_1", "reason": "master down"}
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["msg"] == "VI_1: BACKUP -> MASTER"
    assert entry["instance"] == "VI_1"
    assert entry["reason"] == "master down"
    assert entry["level"] == "info"
