"""The autopilot: a thread that carries VRRP instances through their steady states.

Why: on this kind of machine a wake-up of the asyncio loop costs a Python process 100 to 200 us,
several times what it costs keepalived, and an instance at advert_int 0.01 needs a hundred of
them a second. A Master in its steady state only repeats one advertisement on a fixed cadence; a
Backup only hears its Master repeat one (see `vipkeeper.core.steady`). This thread does exactly
that much, woken by a precise timed wait on a lock (`sem_clockwait`), and hands the instance back
to the loop the moment anything else happens. It decides nothing: every decision stays in the
core, which is given a `SteadyReport` of what was done before any other event.

Owns: one daemon thread (started on first use), the jobs it carries (a `Beacon` sends its
messages when due; a `Watch` drains its lazily read socket each time its Master_Down deadline
comes and moves the deadline for each repeat of the Master's advertisement), and the lock that
makes every step of a job atomic with respect to `recall`.

Hands back (by `loop.call_soon_threadsafe(on_return, name, token)`) when a Watch reads a packet
that is not the repeat, when its deadline passes with no repeat (the Master is silent: the core
then decides on Master_Down_Timer expiry), and when a Beacon's send fails. The loop takes an
instance back itself, under the same lock, before it feeds it any other event or reads its socket
(`VrrpSocket.pilot_hook`). A job's socket is only ever read by one side at a time.

Must never: call into asyncio except through `call_soon_threadsafe`, touch the core, or read a
socket it does not hold.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vipkeeper.core.events import PacketReceived, SteadyReport
from vipkeeper.core.steady import Beacon, Echo, Steady, Watch, next_advert_due
from vipkeeper.io.vrrp_socket import VrrpSocket, VrrpSocketPool

log = logging.getLogger(__name__)

# Seconds: the longest single timed wait (a steady deadline is seconds away at most).
_LONGEST_WAIT = 3600.0

_PR_SET_TIMERSLACK = 29  # linux/prctl.h

ReturnCallback = Callable[[str, int], None]
"""Called in the loop with the instance name and the token `engage` returned."""


@dataclass(frozen=True)
class HeldPacket:
    """A packet the autopilot read that was not a repeat: the loop must feed it."""

    interface: str
    family: int  # 4 or 6
    packet: PacketReceived
    arrived: float  # the loop's clock


@dataclass
class Recalled:
    """What `recall` gives back: the report for the core, and the packet it held, if any."""

    report: SteadyReport
    held: HeldPacket | None = None


@dataclass(eq=False)
class _Job:
    """One instance on the autopilot: when it is next due and whom to hand it back to."""

    name: str
    token: int
    due: float
    on_return: ReturnCallback
    count: int = 0
    last_at: float = 0.0
    returned: bool = False

    def report(self) -> SteadyReport:
        return SteadyReport(count=self.count, last_at=self.last_at)


@dataclass(eq=False)
class _BeaconJob(_Job):
    """A steady Master: send its adverts every interval."""

    targets: tuple[tuple[VrrpSocket, str, str, bytes], ...] = ()
    interval: float = 1.0

    def step(self, now: float) -> bool:
        """Send, and move to the next due time; True: hand back (a send failed)."""
        for sock, source, destination, payload in self.targets:
            try:
                sock.send(source, destination, payload)
            except OSError as error:
                log.debug("%s: autopilot send failed, handing back: %s", self.name, error)
                return True
        self.count += 1
        self.due = next_advert_due(self.due, now, self.interval)
        self.last_at = self.due - self.interval
        return False


@dataclass(eq=False)
class _WatchJob(_Job):
    """A steady Backup: read the Master's adverts, hand back on anything else."""

    sock: VrrpSocket | None = None
    interface: str = ""
    family: int = 4
    echo: Echo = field(default_factory=lambda: Echo(b"", "", "", 0))
    master_down_interval: float = 1.0
    held: tuple[PacketReceived, float] | None = None

    def step(self, now: float) -> bool:
        """Drain the repeats; True: hand back (another packet, or the deadline passed)."""
        assert self.sock is not None
        count, last, other = self.sock.read_repeats(self.echo)
        if count:
            self.count += count
            self.last_at = last
            self.due = last + self.master_down_interval
        if other is not None:
            self.held = other
            return True
        return self.due <= now


@dataclass
class AutopilotStats:
    """What the autopilot has done, for the status document."""

    engaged: int = 0
    handed_back: int = 0
    recalled: int = 0
    refused: int = 0
    jobs: dict[str, str] = field(default_factory=dict)  # name -> "beacon" / "watch", for status


class Autopilot:
    """Carries steady instances for a `Driver` (its `pilot`). One per daemon."""

    def __init__(self, pool: VrrpSocketPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._bell = _thread.allocate_lock()  # released by the loop to wake the thread early
        self._bell.acquire()
        self._jobs: dict[str, _BeaconJob | _WatchJob] = {}
        self._tokens = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = AutopilotStats()

    # -- the loop's side ----------------------------------------------------------------------

    def engage(self, name: str, steady: Steady, on_return: ReturnCallback) -> int | None:
        """Take `name` over in `steady`; a token for `recall`, or None if it cannot be carried
        (its socket is not open, not read lazily, or already held)."""
        if self._closed or name in self._jobs:
            return None
        loop = asyncio.get_running_loop()
        job: _BeaconJob | _WatchJob
        if isinstance(steady, Beacon):
            targets = []
            for send in steady.sends:
                try:
                    sock = self._pool.for_destination(send.interface, send.destination)
                except OSError:
                    self.stats.refused += 1
                    return None
                targets.append((sock, send.source, send.destination, send.payload))
            job = _BeaconJob(
                name=name,
                token=self._next_token(),
                due=steady.next_at,
                on_return=on_return,
                targets=tuple(targets),
                interval=steady.interval,
                last_at=steady.next_at - steady.interval,
            )
        elif isinstance(steady, Watch):
            watched = self._pool.get(steady.interface, steady.family)
            if watched is None or not watched.lazy or watched.pilot_hook is not None:
                self.stats.refused += 1
                return None
            job = _WatchJob(
                name=name,
                token=self._next_token(),
                due=steady.deadline,
                on_return=on_return,
                sock=watched,
                interface=steady.interface,
                family=steady.family,
                echo=steady.echo,
                master_down_interval=steady.master_down_interval,
            )
            token = job.token
            watched.pilot_hook = lambda: on_return(name, token)
        else:  # pragma: no cover - Steady is a closed union
            raise TypeError(f"unknown steady state {steady!r}")
        self._loop = loop
        with self._lock:
            self._jobs[name] = job
        self.stats.engaged += 1
        self.stats.jobs[name] = "beacon" if isinstance(job, _BeaconJob) else "watch"
        self._start()
        self._ring()
        return job.token

    def _next_token(self) -> int:
        self._tokens += 1
        return self._tokens

    def recall(self, name: str, token: int | None = None) -> Recalled | None:
        """Take `name` back (only the job `token` names, if given); None if not held."""
        with self._lock:
            job = self._jobs.get(name)
            if job is None or (token is not None and job.token != token):
                return None
            del self._jobs[name]
        self.stats.recalled += 1
        self.stats.jobs.pop(name, None)
        held = None
        if isinstance(job, _WatchJob):
            if job.sock is not None and job.sock.pilot_hook is not None:
                job.sock.pilot_hook = None
            if job.held is not None:
                packet, arrived = job.held
                held = HeldPacket(job.interface, job.family, packet, arrived)
        return Recalled(report=job.report(), held=held)

    def holds(self, name: str) -> bool:
        return name in self._jobs

    def close(self) -> None:
        """Stop the thread; jobs still held are dropped (recall them first)."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if isinstance(job, _WatchJob) and job.sock is not None:
                    job.sock.pilot_hook = None
            self._jobs.clear()
        self._ring()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vipkeeper-autopilot")
            self._thread.daemon = True
            self._thread.start()

    def _ring(self) -> None:
        with contextlib.suppress(RuntimeError):  # already rung: the thread has yet to wake
            self._bell.release()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        _sharpen_timers()
        lock, bell, jobs, monotonic = self._lock, self._bell, self._jobs, time.monotonic
        while True:
            wake: float | None = None
            with lock:
                if self._closed:
                    return
                now = monotonic()
                for job in jobs.values():
                    if job.returned:
                        continue
                    if job.due <= now:
                        try:
                            hand_back = job.step(now)
                        except Exception:
                            log.exception("%s: autopilot step failed, handing back", job.name)
                            hand_back = True
                        if hand_back:
                            job.returned = True
                            self.stats.handed_back += 1
                            self._hand_back(job)
                            continue
                    if wake is None or job.due < wake:
                        wake = job.due
            if wake is None:
                bell.acquire()
                continue
            timeout = wake - monotonic()
            if timeout > 0:
                bell.acquire(True, min(timeout, _LONGEST_WAIT))

    def _hand_back(self, job: _Job) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is going away
            loop.call_soon_threadsafe(job.on_return, job.name, job.token)


def _sharpen_timers() -> None:
    """Ask the kernel to wake this thread on time: a sleeping thread's timers may otherwise fire
    up to its timer slack (50 us by default) late, on every advertisement and on a takeover."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
