"""Fixtures for the unit tests: an event loop in another thread, for code that hands coroutines
to the daemon's loop from a thread of its own (the /metrics scrape)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from vipkeeper.testing.threads import loop_in_thread


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with loop_in_thread() as running:
        yield running
