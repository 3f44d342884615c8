"""Polling for the asynchronous unit tests: wait until a condition holds, never sleep blindly."""

from __future__ import annotations

from collections.abc import Callable

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

GUARD = 20.0  # seconds; only guards against a hung test, no assertion depends on it


async def wait_for(condition: Callable[[], bool], *, every: float = 0.005) -> None:
    """Return once `condition()` is true; AssertionError if it is still false after GUARD."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(GUARD),
        wait=wait_fixed(every),
        retry=retry_if_exception_type(AssertionError),
        reraise=True,
    ):
        with attempt:
            assert condition()
