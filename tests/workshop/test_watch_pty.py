"""`make watch` in a real terminal (a pseudo-terminal) while the MASTER is killed: the view
keeps running and shows the VIP change hands; the delay from the harness's own probe seeing
the new holder to the screen showing it is measured and bounded."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from harness import Lab, VipWatcher, wait_until
from harness.faults import Kill
from harness.topology import REACTION_MARGIN, lab_topology

TOPO = lab_topology()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")
# The view refreshes 4 times a second and reads each director every 0.2 s through one
# `docker exec`; the harness's probe reads the same way.  Their difference stays under one
# second plus one read's worth of a busy machine.
DISPLAY_LAG = 1.0 + REACTION_MARGIN / 2


class Screen:
    """Everything the terminal received, as text without escape codes, with arrival times."""

    def __init__(self, fd: int) -> None:
        self.fd, self.chunks, self.lock = fd, [], threading.Lock()
        self.chunks: list[tuple[float, str]]
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.chunks.append((time.time(), ANSI.sub("", data.decode(errors="replace"))))

    def first(self, text: str, after: float = 0.0) -> float | None:
        with self.lock:
            chunks = [(t, c) for t, c in self.chunks if t >= after]
        joined, times = "", []
        for t, chunk in chunks:
            joined += chunk
            times.append((len(joined), t))
        at = joined.find(text)
        if at < 0:
            return None
        return next(t for end, t in times if end >= at + len(text))


def test_watch_in_a_terminal_shows_the_vip_change_hands_during_a_kill(healed_after: Lab) -> None:
    lab = healed_after
    master = TOPO.preferred_master.name
    (backup, *_) = TOPO.others(master)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "watch"],
        cwd=TOPO.root,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "50"},
        start_new_session=True,
    )
    os.close(secondary)
    screen = Screen(primary)
    try:
        wait_until(
            lambda: screen.first(f"held by: {master}"),
            timeout=60,
            what=f"the live view to show {master} holding the VIP",
        )
        with VipWatcher(lab, lambda t, h: None, interval=0.1) as watcher:
            killed_at = Kill(lab, master).apply()
            shown_at = wait_until(
                lambda: screen.first(f"held by: {backup}", after=killed_at),
                timeout=TOPO.director(backup).master_down_interval + REACTION_MARGIN + 10,
                what=f"the live view to show {backup} holding the VIP",
            )
            seen_at = wait_until(
                lambda: next((t for t, h in watcher.history if h == {backup}), None),
                timeout=REACTION_MARGIN + 10,
                what=f"the harness's probe to see {backup} holding the VIP",
            )
        # The transition line: MASTER -> exited (or -> "no status" first, when an exec fails
        # before Docker reports the container gone).
        left_at = screen.first(f"{master}: MASTER -> ", after=killed_at)
        assert proc.poll() is None, "the live view stopped during the fault"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(primary)
    lag = shown_at - seen_at  # negative: the view was first
    print(f"kill -> shown {shown_at - killed_at:.2f} s; probe -> shown {lag:+.2f} s")
    assert shown_at - killed_at <= TOPO.director(backup).master_down_interval + REACTION_MARGIN
    assert lag <= DISPLAY_LAG, f"the view showed {backup} {lag:.2f} s after the probe saw it"
    assert left_at is not None and left_at - killed_at <= DISPLAY_LAG
    assert proc.returncode == 0
