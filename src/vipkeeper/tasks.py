"""The daemon's background tasks: notify scripts, address look-ups, reloads asked by a signal.

Owns their lifetime: each task is kept until it ends, a failure is logged, and shutdown waits a
bounded time for the ones still running; it never cancels them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

log = logging.getLogger("vipkeeper")


class BackgroundTasks:
    """Tasks started and forgotten by the caller, still watched here."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def spawn(self, coroutine: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_coro(), exc_info=task.exception())

    async def wait(self, grace: float) -> None:
        """Wait up to `grace` seconds for the running tasks but the caller's own (a reload
        shuts instances down from inside a task)."""
        me = asyncio.current_task()
        pending = [t for t in self._tasks if not t.done() and t is not me]
        if pending:
            await asyncio.wait(pending, timeout=grace)
