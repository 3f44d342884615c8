"""A one-shot timer on the event loop that fires when it is due, from a Linux timerfd.

Why not `loop.call_at`: asyncio sleeps in epoll_wait with a millisecond timeout, and the kernel
lets a sleeping task's timeout run late by 0.1 % of its length (select_estimate_accuracy, up to
100 ms) so that wake-ups can be batched. A Backup waiting out a 3.6 s Master_Down_Interval
therefore woke up to 3.6 ms late, and its takeover came that much after keepalived's, which arms
a timerfd. A timerfd on CLOCK_MONOTONIC with an absolute expiry gets the task's own timer slack
(50 us by default) instead.

Owns: the timerfd (created non-blocking and close-on-exec), its registration with the loop, and
the conversion from the loop's clock, which is CLOCK_MONOTONIC (`time.monotonic`), to a
`struct itimerspec`. Must never: decide what is due (the driver does), or block.

`make_timer(loop, callback)` returns a `PreciseTimer`, or a `LoopTimer` over `call_at` where
timerfd is not available (not Linux, no libc through ctypes, or an event loop whose clock is
not CLOCK_MONOTONIC).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Timer(Protocol):
    def arm(self, when: float) -> None:
        """Call the callback once at loop time `when` (re-arming replaces the last `arm`)."""

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class LoopTimer:
    """The fallback: `loop.call_at`, with epoll's timeout rounding and slack."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        self.cancel()

    def _fire(self) -> None:
        self._handle = None
        self._callback()


class PreciseTimer:
    """A timerfd registered with the loop as a reader."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[], None],
        libc: ctypes.CDLL,
    ) -> None:
        self._loop = loop
        self._callback = callback
        self._settime = libc.timerfd_settime
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"timerfd_create: {os.strerror(error)}")
        self._fd: int | None = fd
        self._spec = _Itimerspec()
        self._set_since_fired = False
        loop.add_reader(fd, self._readable)

    def arm(self, when: float) -> None:
        # An all-zero it_value disarms: a time at or before the clock's epoch fires at once.
        fraction, seconds = math.modf(max(when, 0.0))
        nanoseconds = int(fraction * 1e9)
        self._spec.it_value.tv_sec = int(seconds)
        self._spec.it_value.tv_nsec = nanoseconds if seconds or nanoseconds else 1
        self._set()

    def cancel(self) -> None:
        self._spec.it_value.tv_sec = 0
        self._spec.it_value.tv_nsec = 0
        self._set()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self._loop.remove_reader(fd)
        os.close(fd)

    def _set(self) -> None:
        self._set_since_fired = True
        if self._fd is None:
            return
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"timerfd_settime: {os.strerror(error)}")

    def _readable(self) -> None:
        # Setting the timer clears the expiry count, so the fd needs no read() when the
        # callback re-arms or cancels it (the driver always does); otherwise disarm it here.
        self._set_since_fired = False
        self._callback()
        if not self._set_since_fired:
            self.cancel()


def make_timer(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Timer:
    """A PreciseTimer where the platform allows it, else a LoopTimer."""
    clock = time.get_clock_info("monotonic").implementation
    if "CLOCK_MONOTONIC" not in clock or abs(loop.time() - time.monotonic()) > 1.0:
        return LoopTimer(loop, callback)
    try:
        # The process's own symbols, libc's among them (as the autopilot finds prctl): no
        # library search, which would run ldconfig at start-up.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        return PreciseTimer(loop, callback, libc)
    except (OSError, AttributeError) as error:
        log.debug("timerfd unavailable, timers use the event loop: %s", error)
        return LoopTimer(loop, callback)
