"""The driver's timer: fires once, never before it is due, re-arming replaces, cancel cancels;
the timerfd version and the call_at fallback behave alike."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from vipkeeper.io.timerfd import LoopTimer, PreciseTimer, Timer, make_timer

Factory = Callable[[asyncio.AbstractEventLoop, Callable[[], None]], Timer]


def _precise(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Timer:
    timer = make_timer(loop, callback)
    assert isinstance(timer, PreciseTimer), "timerfd should be available on Linux"
    return timer


FACTORIES = [pytest.param(_precise, id="timerfd"), pytest.param(LoopTimer, id="call_at")]


@pytest.mark.parametrize("factory", FACTORIES)
async def test_fires_once_and_not_before_it_is_due(factory: Factory) -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    done = asyncio.Event()

    def callback() -> None:
        fired.append(loop.time())
        done.set()

    timer = factory(loop, callback)
    when = loop.time() + 0.05
    timer.arm(when)
    await asyncio.wait_for(done.wait(), 5)
    # A second timer proves time went on without a second call of the first.
    later = asyncio.Event()
    other = factory(loop, later.set)
    other.arm(loop.time() + 0.05)
    await asyncio.wait_for(later.wait(), 5)
    assert len(fired) == 1
    assert fired[0] >= when
    timer.close()
    other.close()


@pytest.mark.parametrize("factory", FACTORIES)
async def test_rearming_replaces_and_cancel_cancels(factory: Factory) -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    timer = factory(loop, lambda: calls.append("first"))
    timer.arm(loop.time() + 0.02)
    timer.arm(loop.time() + 0.04)  # replaces the 0.02 expiry
    cancelled = factory(loop, lambda: calls.append("cancelled"))
    cancelled.arm(loop.time() + 0.02)
    cancelled.cancel()
    witness = asyncio.Event()
    last = factory(loop, witness.set)
    last.arm(loop.time() + 0.1)
    await asyncio.wait_for(witness.wait(), 5)
    assert calls == ["first"]
    for each in (timer, cancelled, last):
        each.close()


@pytest.mark.parametrize("factory", FACTORIES)
async def test_a_time_already_past_fires_at_once(factory: Factory) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    timer = factory(loop, done.set)
    timer.arm(loop.time() - 1.0)
    await asyncio.wait_for(done.wait(), 5)
    timer.close()


async def test_close_releases_the_timerfd() -> None:
    loop = asyncio.get_running_loop()
    before = set(os.listdir("/proc/self/fd"))
    timer = _precise(loop, lambda: None)
    timer.arm(loop.time() + 10)
    assert set(os.listdir("/proc/self/fd")) != before
    timer.close()
    timer.close()  # twice is harmless
    timer.arm(loop.time() + 0.01)  # after close: ignored, no error
    assert set(os.listdir("/proc/self/fd")) == before
