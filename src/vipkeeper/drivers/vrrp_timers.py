"""The VRRP driver's timers: every machine's next deadline on one heap, one timer armed.

Owns the heap (with lazy invalidation) and the choice of the loop's timer or a timerfd; which
deadline is current it asks the driver, and what happens when the timer fires is the driver's.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from vipkeeper.io.timerfd import make_timer

# Seconds: a sleep longer than this uses the timerfd (see Deadlines.arm).
LONG_SLEEP = 0.05


class Deadlines:
    """The machines' deadlines, earliest first, and the one timer armed for the earliest.

    `current(name)` is the machine's deadline as it is now (None: no timer here, as for a
    machine removed or carried by the pilot); `on_timer` runs when the armed deadline comes.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_timer: Callable[[], None],
        current: Callable[[str], float | None],
    ) -> None:
        self._loop = loop
        self._current = current
        self._on_timer = on_timer
        self._heap: list[tuple[float, str]] = []
        self._pushed: dict[str, float] = {}
        # Short sleeps on the loop's own timer; long ones on a timerfd (see arm).
        self._handle: asyncio.TimerHandle | None = None
        self._long_timer = make_timer(loop, on_timer)
        self._long_armed = False
        self._armed_at: float | None = None

    # The heap holds, for every machine with a deadline D, an entry at D or earlier;
    # `_pushed[name]` is the newest entry's deadline. An entry that is not the machine's current
    # deadline is stale: popping it re-pushes the current one if no newer entry exists. Packets
    # read inside a timer wake-up therefore push nothing: a Backup restarting its timer
    # there leaves its old entry to be popped, and re-pushed, in the same wake-up.

    def schedule(self, name: str, deadline: float | None, *, in_timer: bool) -> None:
        if deadline is None:
            return
        pushed = self._pushed.get(name)
        if pushed == deadline or (in_timer and pushed is not None and pushed < deadline):
            return
        self._pushed[name] = deadline
        heapq.heappush(self._heap, (deadline, name))
        if self._armed_at is None or deadline < self._armed_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        self._armed_at = deadline
        # epoll_wait may wake up to 0.1 % of its timeout late (the kernel's slack for sleeping
        # tasks): 3.6 ms on a 3.6 s Master_Down_Interval. Beyond LONG_SLEEP a timerfd keeps the
        # deadline; below it the slack is under 50 us and the loop's timer costs less.
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if deadline - self._loop.time() > LONG_SLEEP:
            self._long_timer.arm(deadline)
            self._long_armed = True
            return
        if self._long_armed:
            self._long_timer.cancel()
            self._long_armed = False
        self._handle = self._loop.call_at(deadline, self._on_timer)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._long_armed:
            self._long_timer.cancel()
            self._long_armed = False

    def _pop(self) -> tuple[float, str, bool]:
        """Pop the earliest entry: (deadline, machine name, whether it is still current)."""
        deadline, name = heapq.heappop(self._heap)
        if self._pushed.get(name) == deadline:
            del self._pushed[name]
        current = self._current(name)
        if current == deadline:
            return deadline, name, True
        if current is not None and name not in self._pushed:
            self._pushed[name] = current
            heapq.heappush(self._heap, (current, name))
        return deadline, name, False

    def _top_is_current(self) -> bool:
        deadline, name = self._heap[0]
        return self._current(name) == deadline

    def forget(self, name: str) -> None:
        """`name`'s entries are stale from now on (the pilot carries it)."""
        self._pushed.pop(name, None)

    def rearm_for_current(self) -> None:
        """Drop stale entries off the top of the heap and re-arm at the first current one."""
        if self._armed_at is None or not self._heap or self._top_is_current():
            return
        while self._heap and not self._top_is_current():
            self._pop()
        if not self._heap:
            self.disarm()
            self._armed_at = None
        elif self._heap[0][0] != self._armed_at:
            self._arm(self._heap[0][0])

    def fired(self) -> None:
        """The armed timer has fired: nothing is armed until the next `arm_next` or `schedule`."""
        self._armed_at = None
        self._handle = None
        self._long_armed = False

    def take_due(self, horizon: float) -> dict[str, float]:
        """Pop every current deadline up to `horizon` (machine -> deadline) and drop the stale
        entries above them; `arm_next` then arms for the next one."""
        due: dict[str, float] = {}
        while self._heap and self._heap[0][0] <= horizon:
            deadline, name, current = self._pop()
            if current and name not in due:
                due[name] = deadline
        while self._heap and not self._top_is_current():
            self._pop()
        return due

    def arm_next(self) -> None:
        if self._heap:
            self._arm(self._heap[0][0])

    def close(self) -> None:
        self.disarm()
        self._long_timer.close()
        self._armed_at = None
