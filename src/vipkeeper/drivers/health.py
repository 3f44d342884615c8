"""The health driver: runs a `core.health.HealthMonitor`'s checks on one asyncio loop.

Owns the clock (`loop.time()`) and one re-armed timer for every check, and feeds every result
back to the core; it decides nothing about a server's health (the core does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

from vipkeeper.core.health import (
    CheckerId,
    CheckFailed,
    HealthEffect,
    HealthEvent,
    HealthMonitor,
    RunCheck,
)
from vipkeeper.io.checkers import Checker, CheckInFlight, ResultCallback
from vipkeeper.io.poller import SocketPoller

log = logging.getLogger(__name__)


EffectSink = Callable[[Sequence[HealthEffect]], None]
Starter = Callable[[CheckerId, ResultCallback, SocketPoller], CheckInFlight]


# Seconds a check may start early to share a wake-up with others (see HealthScheduler._on_timer).
CHECK_SLACK = 0.01


class HealthScheduler:
    """Runs a HealthMonitor's checks on the running loop; hands every other order to `emit`.

    One timer (re-armed with `call_at` only when the monitor's next deadline moves earlier) starts
    due checks. A checker with `start` (TCP_CHECK, HTTP_GET) runs on loop callbacks and reports
    through `_on_result`; any other (MISC_CHECK) runs as its own task. Either way a slow server
    never delays another. `emit` receives PoolChanged / ServerUp / ServerDown / WeightChanged /
    Quorum* / RunNotifyScript orders in the order the core returned them; it must not block
    (queue async work).
    """

    def __init__(
        self,
        monitor: HealthMonitor,
        checkers: Mapping[CheckerId, Checker],
        emit: EffectSink,
    ) -> None:
        missing = set(monitor.checker_ids) - set(checkers)
        if missing:
            raise ValueError(f"no checker configured for {sorted(missing)[:3]}")
        self._monitor = monitor
        self._checkers = dict(checkers)
        # Keyed by the monitor's own CheckerId objects, which its RunCheck orders carry: a
        # lookup then matches by identity instead of comparing two dataclasses.
        self._starters: dict[CheckerId, Starter] = {}
        for checker_id in monitor.checker_ids:
            start = getattr(self._checkers[checker_id], "start", None)
            if callable(start):
                self._starters[checker_id] = start
        self._emit = emit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[CheckerId, CheckInFlight] = {}
        self._poller: SocketPoller | None = None
        self._stopped = False
        self._begun: dict[CheckerId, float] = {}  # loop time each running check started
        # Told of every finished check: (checker, result, loop time it finished, seconds taken).
        self.on_check: Callable[[CheckerId, HealthEvent, float, float], None] | None = None

    @property
    def checks_running(self) -> int:
        return len(self._tasks) + len(self._running)

    def start(self) -> None:
        """Start checking; call from the running loop. Emits the initial pools."""
        self._loop = asyncio.get_running_loop()
        if self._starters:
            self._poller = SocketPoller(self._loop)
        self._dispatch(self._monitor.start(self._loop.time()))
        self._arm()

    async def stop(self, *, shutdown: bool = True) -> None:
        """Cancel the timer and every running check; emit the monitor's shutdown orders unless
        `shutdown` is False (a reload hands the servers' health to a successor instead)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        running = list(self._running.values())
        self._running.clear()
        for check in running:
            check.cancel()
        if self._poller is not None:
            self._poller.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if shutdown:
            self._emit(self._monitor.shutdown())

    def _arm(self) -> None:
        if self._stopped:
            return
        assert self._loop is not None
        deadline = self._monitor.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # the armed timer fires first; it re-arms after running what is due
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        # Checks due within CHECK_SLACK start in this wake-up: a thousand servers then cost a
        # hundred wake-ups a second instead of a thousand, for a check at most that much early.
        self._dispatch(self._monitor.handle_timer(self._loop.time() + CHECK_SLACK))
        self._arm()

    def _dispatch(self, effects: Sequence[HealthEffect]) -> None:
        others: list[HealthEffect] = []
        for effect in effects:
            if isinstance(effect, RunCheck):
                self._start_check(effect.checker)
            else:
                others.append(effect)
        if others:
            self._emit(others)

    def _start_check(self, checker_id: CheckerId) -> None:
        assert self._loop is not None
        self._begun[checker_id] = self._loop.time()
        start = self._starters.get(checker_id)
        if start is None:
            task = self._loop.create_task(self._check(checker_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        assert self._poller is not None
        try:
            self._running[checker_id] = start(checker_id, self._on_result, self._poller)
        except Exception as error:  # a checker bug must not stall the server's schedule
            log.exception("checker %s raised", checker_id)
            event = CheckFailed(checker=checker_id, reason=f"checker error: {error!r}")
            self._running[checker_id] = self._loop.call_soon(self._on_result, event)

    def _on_result(self, event: HealthEvent) -> None:
        assert self._loop is not None
        self._running.pop(event.checker, None)
        self._settle(event)

    def _settle(self, event: HealthEvent) -> None:
        """Feed a finished check's result to the monitor and carry out what it orders."""
        assert self._loop is not None
        if self._stopped:
            return
        self._observe(event)
        self._dispatch(self._monitor.handle(event, self._loop.time()))
        self._arm()

    def _observe(self, event: HealthEvent) -> None:
        assert self._loop is not None
        now = self._loop.time()
        begun = self._begun.pop(event.checker, now)
        if self.on_check is not None:
            self.on_check(event.checker, event, now, now - begun)

    async def _check(self, checker_id: CheckerId) -> None:
        assert self._loop is not None
        try:
            event = await self._checkers[checker_id].run(checker_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a checker bug must not stall the server's schedule
            log.exception("checker %s raised", checker_id)
            event = CheckFailed(checker=checker_id, reason=f"checker error: {error!r}")
        self._settle(event)
