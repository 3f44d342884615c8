"""One epoll set for the health-check sockets of a loop, which the loop watches as one fd.

Owns the registration of each check's socket and the dispatch of its readiness to its watcher;
it never reads or writes a socket itself.
"""

from __future__ import annotations

import asyncio
import select
from typing import Protocol


class Watcher(Protocol):
    """A check in flight that owns one watched socket."""

    def on_ready(self, events: int) -> None: ...


class SocketPoller:
    """One epoll set for the health-check sockets of a loop, which the loop watches as one fd.

    Registering each socket with the loop instead costs several times more CPU (asyncio's
    selector bookkeeping, a Handle per registration and one per event), which at a thousand
    checks a second was the largest share of the checkers' own time. Here a registration is one
    epoll_ctl and a ready socket one method call. The owner closes the poller after cancelling
    the checks that use it (`HealthScheduler.stop`, `run`).
    """

    __slots__ = ("_epoll", "_probes", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._probes: dict[int, Watcher] = {}
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    def close(self) -> None:
        if self._epoll.closed:
            return
        self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._probes.clear()

    def watch(self, fd: int, watcher: Watcher, events: int) -> None:
        self._epoll.register(fd, events)
        self._probes[fd] = watcher

    def change(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def forget(self, fd: int) -> None:
        """Stop watching `fd`; call before closing it (a closed fd may come back as another)."""
        if self._probes.pop(fd, None) is not None and not self._epoll.closed:
            self._epoll.unregister(fd)

    def _on_ready(self) -> None:
        probes = self._probes
        # Look the probes up before running any: one that finishes may close a socket whose fd
        # a new check then reuses, and that check must not see the old socket's event.
        ready = [(probes.get(fd), events) for fd, events in self._epoll.poll(0)]
        for probe, events in ready:
            if probe is None:
                continue
            try:
                probe.on_ready(events)
            except Exception as error:  # only a result callback can raise: report, go on
                self.loop.call_exception_handler(
                    {"message": "health check result callback failed", "exception": error}
                )
