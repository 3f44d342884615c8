"""Waiting for a condition in a test or a benchmark: poll up to a stated bound, never sleep blind.

Owns the one polling loop every suite uses: `wait_until` (a probe that returns a truthy value),
`poll` (a check that raises AssertionError until it holds, with the daemons' logs on failure;
`polled` makes it a decorator) and `wait_for` (the asyncio form, for the unit tests that run
the loop themselves). A timeout is an AssertionError (`WaitTimeout`), so pytest reports it as a
failed expectation naming what was awaited and the last value seen.
Must never: wait without a bound, or assert a duration."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.05  # seconds between two looks at a namespace lab
GUARD = 20.0  # seconds; bounds an in-process wait, only against a hung test


class WaitTimeout(AssertionError):
    """A condition did not hold within its bound."""


class HasLog(Protocol):
    def log(self) -> str: ...


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `probe` every `interval` s until it returns a truthy value; return that value.

    Exceptions in `ignore` count as "not yet". After `timeout` s raise WaitTimeout naming
    `what` and the last result (or the last exception).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: object = probe()
        except ignore as error:
            last = error
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def poll(
    within: float,
    check: Callable[[], T],
    daemons: Iterable[HasLog] = (),
    *,
    interval: float = POLL_INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """Call `check` until it stops raising AssertionError (or `retry_on`), for at most `within`
    seconds, and return what it returned; the last error is raised, carrying the logs of
    `daemons` (anything with `log()`)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except retry_on as error:
            if time.monotonic() >= deadline:
                logs = "\n".join(f"--- {d!r} ---\n{d.log()}" for d in daemons)
                if not logs and isinstance(error, AssertionError):
                    raise
                raise AssertionError(f"{error}\n(after {within:g} s)\n{logs}") from error
        time.sleep(interval)


def polled(
    within: float, *, interval: float = POLL_INTERVAL
) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """`@polled(10)` on a check: calling it polls it (`poll`) for at most `within` seconds."""

    def decorate(check: Callable[[], T]) -> Callable[[], T]:
        return functools.wraps(check)(lambda: poll(within, check, interval=interval))

    return decorate


async def wait_for(
    condition: Callable[[], bool], *, every: float = 0.005, within: float = GUARD
) -> None:
    """Return once `condition()` is true; WaitTimeout if it is still false after `within`."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"condition still false after {within:g} s")
        await asyncio.sleep(every)
