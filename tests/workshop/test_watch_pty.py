"""`make watch` in a real terminal (a pseudo-terminal) while the MASTER is killed: the view keeps
running, shows the MASTER's container exited within VIEW_BOUND (one second) of the kill, and the
VIP in the BACKUP's hands within its Master_Down_Interval plus VIEW_BOUND, both measured from
`Kill.apply()` returning to the text arriving on the terminal."""

from __future__ import annotations

import contextlib
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

from harness import Lab, wait_until
from harness.faults import Kill
from harness.topology import lab_topology
from harness.watch import VIEW_BOUND

TOPO = lab_topology()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")


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

    def text(self) -> str:
        with self.lock:
            return "".join(chunk for _, chunk in self.chunks)


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
        killed_at = Kill(lab, master).apply()
        bound = TOPO.director(backup).master_down_interval + VIEW_BOUND
        shown_at = wait_until(
            lambda: screen.first(f"held by: {backup}", after=killed_at),
            timeout=bound + 10,
            what=f"the live view to show {backup} holding the VIP",
        )
        left_at = screen.first(f"{master}: MASTER -> exited", after=killed_at)
        assert proc.poll() is None, "the live view stopped during the fault"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGUSR1)  # its threads' stacks, onto the screen
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(primary)
    print(f"kill -> {master} shown exited {(left_at or 0) - killed_at:.2f} s, "
          f"{backup} shown holding the VIP {shown_at - killed_at:.2f} s")  # fmt: skip
    assert left_at is not None and left_at - killed_at <= VIEW_BOUND
    assert shown_at - killed_at <= bound
    assert proc.returncode == 0, screen.text()[-4000:]
