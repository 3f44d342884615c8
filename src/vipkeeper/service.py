"""The systemd service protocol (sd_notify(3)): readiness, status, reload and stop notices, and
the watchdog.

Owns the one datagram socket to `$NOTIFY_SOCKET` (a path, or an abstract name written with a
leading '@') and the watchdog's beat, a callback of the daemon's own event loop that sends
`WATCHDOG=1` every half of `$WATCHDOG_USEC`: a loop that is stuck stops feeding it and systemd
restarts the service. It reads the three variables once and removes them from the environment,
so notify scripts and checkers never talk to systemd in the daemon's name.

It never blocks and never fails the daemon: sends are non-blocking, and a send that fails is
logged once and otherwise ignored. Without `$NOTIFY_SOCKET` every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Iterable, MutableMapping

log = logging.getLogger("vipkeeper")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

# sd_watchdog_enabled(3) advises a beat at half the timeout: one late beat is not yet a restart.
WATCHDOG_BEATS_PER_TIMEOUT = 2


def notify_address(value: str) -> str | bytes | None:
    """The address to send to, from `$NOTIFY_SOCKET`: a filesystem path, or '@name' for an
    abstract socket (sent as a leading NUL byte); None for an empty or unusable value."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Seconds between two WATCHDOG=1, or None when systemd asked for no watchdog (or asked
    another process: `$WATCHDOG_PID` names the one it watches)."""
    if not usec:
        return None
    if pid and (not pid.isdigit() or int(pid) != own_pid):
        return None
    try:
        timeout = int(usec)
    except ValueError:
        return None
    if timeout <= 0:
        return None
    return timeout / 1_000_000 / WATCHDOG_BEATS_PER_TIMEOUT


def status_line(states: Iterable[str]) -> str:
    """`STATUS=` text for a set of instance states, e.g. "2 instances: 1 MASTER, 1 BACKUP"."""
    counted = Counter(states)
    total = sum(counted.values())
    noun = "instance" if total == 1 else "instances"
    if not total:
        return f"0 {noun}"
    parts = [f"{counted[state]} {state}" for state in sorted(counted)]
    return f"{total} {noun}: " + ", ".join(parts)


class Notifier:
    """Sends sd_notify messages; does nothing when the service manager gave no socket."""

    def __init__(self, address: str | bytes | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog
        self._socket: socket.socket | None = None
        self._failed = False
        self._beat: asyncio.TimerHandle | None = None
        self._last_status: str | None = None
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read and remove `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`."""
        env = os.environ if environ is None else environ
        raw = env.pop(NOTIFY_SOCKET, "")
        usec = env.pop(WATCHDOG_USEC, None)
        pid = env.pop(WATCHDOG_PID, None)
        address = notify_address(raw)
        if raw and address is None:
            log.warning("%s=%r is neither a path nor an abstract name, ignored", NOTIFY_SOCKET, raw)
        interval = watchdog_interval(usec, pid, os.getpid()) if address is not None else None
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """One datagram of `KEY=value` lines; True if it was handed to the kernel."""
        if self._socket is None or self.address is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify the service manager: %s", exc)
            return False
        return True

    # -- the life cycle -------------------------------------------------------------------------

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets a manager that runs Type=notify-reload match this to its request.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now}", "STATUS=reloading the configuration")

    def reloaded(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    # -- the watchdog ---------------------------------------------------------------------------

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Beat from `loop` itself, so a loop that stops running stops the beat."""
        if self.watchdog_interval is None or not self.enabled or self._beat is not None:
            return
        self._feed(loop)

    def _feed(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.watchdog_interval is not None
        self.send("WATCHDOG=1")
        self._beat = loop.call_later(self.watchdog_interval, self._feed, loop)

    def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
