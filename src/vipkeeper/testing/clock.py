"""A clock that only moves when told to (the `now` fed to the core in tests).

Must never read the real time or sleep.
"""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds under test control; `time()` mirrors `asyncio` loop.time()."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go backwards")
        self.now += seconds
        return self.now

    def advance_to(self, when: float) -> float:
        if when < self.now:
            raise ValueError(f"cannot move the clock back from {self.now} to {when}")
        self.now = when
        return self.now
