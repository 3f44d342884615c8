"""What runs beside a test in a background thread: a `Sampler` that takes a reading at a fixed
interval while a test acts, and `loop_in_thread`, an asyncio loop serving another thread's calls.

Must never: outlive the `with` block that started it (both stop and join on leaving it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

SETTLE_TIMEOUT = 5.0  # s: the most a stopping loop may take to cancel and finish its tasks


class Sampler:
    """Calls `sample()` in a daemon thread every `interval` s, from entering the `with` block
    until leaving it; leaving waits up to `join_timeout` s for a sample under way to end.
    A subclass keeps what it reads in its own attributes."""

    def __init__(self, interval: float, *, join_timeout: float = 30.0) -> None:
        self.interval = interval
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._join_timeout)


@contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a daemon thread, for code under test that hands coroutines to
    a loop from another thread.  On leaving, the tasks still pending (a call the caller gave up
    on) are cancelled and awaited before the loop stops and closes."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:

        async def settle() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(settle(), running).result(SETTLE_TIMEOUT)
        running.call_soon_threadsafe(running.stop)
        thread.join(SETTLE_TIMEOUT)
        running.close()
