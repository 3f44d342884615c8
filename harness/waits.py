"""Waiting for a condition in the lab: poll with tenacity, up to a stated bound, never sleep blind.

Owns: the one retry policy the harness uses.  Must never: wait without a bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)
from tenacity.retry import retry_base

T = TypeVar("T")


class LabTimeout(AssertionError):
    """A condition did not hold within its bound (an AssertionError, so pytest reports it as
    a failed expectation, with what was awaited and the last value seen)."""


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `probe` every `interval` s until it returns a truthy value; return that value.

    Exceptions in `ignore` count as "not yet".  After `timeout` s raise LabTimeout naming
    `what` and the last result.
    """
    last: list[object] = [None]

    def falsy(value: object) -> bool:
        last[0] = value
        return not value

    retry: retry_base = retry_if_result(falsy)
    if ignore:
        retry = retry | retry_if_exception_type(ignore)
    retrying = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval), retry=retry)
    try:
        return retrying(probe)
    except RetryError as exc:
        outcome = exc.last_attempt
        detail = outcome.exception() if outcome.failed else last[0]
        raise LabTimeout(
            f"timed out after {timeout:g} s waiting for {what}; last: {detail!r}"
        ) from None
