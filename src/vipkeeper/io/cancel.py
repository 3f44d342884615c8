"""Stopping a task an adapter owns: cancel it and wait until it has ended."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` (None: nothing runs) and return once it has ended; its cancellation does
    not propagate to the caller."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
