"""The autopilot thread (`io.autopilot`) carries Beacons and Watches over duck-typed fake sockets
and hands instances back to the loop; every wait polls a condition, none sleeps a fixed time."""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipkeeper.core.effects import SendAdvert
from vipkeeper.core.events import PacketReceived, SourceAddressChanged, Started, TimerFired
from vipkeeper.core.steady import Beacon, Watch
from vipkeeper.core.vrrp import InstanceSettings, VrrpInstance
from vipkeeper.core.vrrp_numbers import MULTICAST_V4 as GROUP
from vipkeeper.io.autopilot import Autopilot, HeldPacket, _BeaconJob, _WatchJob
from vipkeeper.testing.waits import wait_for

ME = "192.168.0.53"
PEER = "192.168.0.57"
PEERS = ("192.168.0.57", "192.168.0.58")

ADVERT = PacketReceived(source=PEER, destination=GROUP, ttl=255, payload=b"\x21\x33\x96repeat")
OTHER = PacketReceived(source=PEER, destination=GROUP, ttl=255, payload=b"\x21\x33\x00leaving")
ADVERT6 = PacketReceived(source="fe80::57", destination="ff02::12", ttl=255, payload=b"\x31\x33v6")
OTHER6 = PacketReceived(source="fe80::57", destination="ff02::12", ttl=255, payload=b"\x31\x33x")


def key(packet: PacketReceived) -> tuple[bytes, str, str, int]:
    return (packet.payload, packet.source, packet.destination, packet.ttl)


class FakeSocket:
    """The part of `VrrpSocket` the autopilot uses: send, read_repeats, lazy, pilot_hook."""

    def __init__(self, *, lazy: bool = True) -> None:
        self.lazy = lazy
        self.pilot_hook: Callable[[], None] | None = None
        self.sent: list[tuple[float, str, str, bytes]] = []
        self.fail_to: set[str] = set()
        self.reads = 0
        self.reader_threads: set[int] = set()
        self._inbox: deque[tuple[PacketReceived, float]] = deque()
        self._guard = threading.Lock()

    def send(self, source: str, destination: str, payload: bytes) -> None:
        if destination in self.fail_to:
            raise OSError(errno.ENETDOWN, "Network is down")
        self.sent.append((time.monotonic(), source, destination, payload))

    def arrive(self, packet: PacketReceived, at: float) -> None:
        with self._guard:
            self._inbox.append((packet, at))

    def waiting(self) -> int:
        with self._guard:
            return len(self._inbox)

    def read_repeats(
        self, echo: tuple[bytes, str, str, int]
    ) -> tuple[int, float, tuple[PacketReceived, float] | None]:
        self.reader_threads.add(threading.get_ident())
        with self._guard:
            count, last = 0, 0.0
            while self._inbox:
                packet, arrived = self._inbox.popleft()
                if key(packet) != echo:
                    self.reads += 1
                    return count, last, (packet, arrived)
                count += 1
                last = arrived
            self.reads += 1
            return count, last, None


class FakePool:
    """The part of `VrrpSocketPool` the autopilot uses: get and for_destination."""

    def __init__(self) -> None:
        self.sockets: dict[tuple[str, int], FakeSocket] = {}

    def add(self, interface: str = "eth0", family: int = 4, *, lazy: bool = True) -> FakeSocket:
        sock = self.sockets[(interface, family)] = FakeSocket(lazy=lazy)
        return sock

    def get(self, interface: str, family: int) -> FakeSocket | None:
        return self.sockets.get((interface, family))

    def for_destination(self, interface: str, destination: str) -> FakeSocket:
        sock = self.sockets.get((interface, 6 if ":" in destination else 4))
        if sock is None:
            raise OSError(errno.ENODEV, "No such device")
        return sock


@dataclass
class Returns:
    """An `on_return` callback recording the name, token, thread and loop time of each call."""

    calls: list[tuple[str, int, int, float]] = field(default_factory=list)

    def __call__(self, name: str, token: int) -> None:
        loop = asyncio.get_running_loop()  # raises unless called inside the loop
        self.calls.append((name, token, threading.get_ident(), loop.time()))


@pytest.fixture
async def carried() -> AsyncIterator[tuple[FakePool, Autopilot]]:
    pool = FakePool()
    pilot = Autopilot(pool)  # type: ignore[arg-type]
    try:
        yield pool, pilot
    finally:
        pilot.close()


def beacon_sends(*destinations: str) -> tuple[SendAdvert, ...]:
    return tuple(
        SendAdvert(interface="eth0", source=ME, destination=d, payload=f"to {d}".encode())
        for d in destinations
    )


def watch(
    deadline: float,
    *,
    echo: PacketReceived = ADVERT,
    interface: str = "eth0",
    family: int = 4,
    down: float = 3600.0,
) -> Watch:
    return Watch(
        interface=interface,
        family=family,
        echo=key(echo),
        master_down_interval=down,
        deadline=deadline,
    )


# ---- Beacon, in the thread ----------------------------------------------------------------------


async def test_a_beacon_sends_each_message_when_due_and_reports_what_it_sent(carried):
    pool, pilot = carried
    sock = pool.add()
    sends = beacon_sends(*PEERS)
    interval = 0.01
    next_at = time.monotonic() + interval
    returns = Returns()
    token = pilot.engage("VI_1", Beacon(sends=sends, interval=interval, next_at=next_at), returns)
    assert token is not None
    assert pilot.holds("VI_1")
    assert pilot.stats.jobs == {"VI_1": "beacon"}
    await wait_for(lambda: len(sock.sent) >= 2 * 5)
    job = pilot._jobs["VI_1"]
    recalled = pilot.recall("VI_1", token)

    assert recalled is not None and recalled.held is None
    report = recalled.report
    assert len(sock.sent) == len(sends) * report.count
    assert [s[1:] for s in sock.sent] == [(ME, s.destination, s.payload) for s in sends] * (
        report.count
    )
    # Never early: the j-th round is due at next_at + j intervals or later (later only after the
    # thread fell a whole interval behind).
    due = next_at
    for j in range(report.count):
        assert all(sent >= due for sent, *_ in sock.sent[2 * j : 2 * j + 2])
        due += interval
    assert report.last_at <= sock.sent[-2][0]
    assert report.last_at + interval == job.due
    assert returns.calls == []
    assert not pilot.holds("VI_1")
    assert pilot.stats.jobs == {}
    assert (pilot.stats.engaged, pilot.stats.recalled) == (1, 1)

    # Recalled means silent: a job due after the recalled one would have been is served while
    # the recalled one sends nothing more.
    after = len(sock.sent)
    sentinel = pool.add("eth9")
    sentinel_sends = (SendAdvert(interface="eth9", source=ME, destination=GROUP, payload=b"s"),)
    later = job.due + interval
    pilot.engage("VI_2", Beacon(sends=sentinel_sends, interval=interval, next_at=later), returns)
    await wait_for(lambda: len(sentinel.sent) >= 1)
    assert len(sock.sent) == after


async def test_a_failed_send_hands_the_beacon_back_in_the_loop(carried):
    pool, pilot = carried
    sock = pool.add()
    sock.fail_to.add(PEERS[1])
    returns = Returns()
    sends = beacon_sends(*PEERS)
    next_at = time.monotonic() + 0.01
    token = pilot.engage("VI_1", Beacon(sends=sends, interval=1.0, next_at=next_at), returns)
    assert token is not None
    await wait_for(lambda: returns.calls != [])

    [(name, returned_token, thread, when)] = returns.calls
    assert (name, returned_token) == ("VI_1", token)
    assert thread == threading.get_ident()  # through call_soon_threadsafe, not in the thread
    assert when >= next_at
    assert pilot.stats.handed_back == 1
    assert pilot.holds("VI_1")  # until the loop recalls it
    recalled = pilot.recall("VI_1", token)
    assert recalled is not None
    assert recalled.report.count == 0  # the round did not complete: the core sends it again
    assert recalled.held is None


# ---- Beacon cadence, step by step -----------------------------------------------------------


def beacon_job(sock: FakeSocket, due: float, interval: float) -> _BeaconJob:
    return _BeaconJob(
        name="VI_1",
        token=1,
        due=due,
        on_return=lambda name, token: None,
        targets=((sock, ME, GROUP, b"advert"),),  # type: ignore[arg-type]
        interval=interval,
        last_at=due - interval,
    )


def test_a_beacon_keeps_its_cadence_and_restarts_it_after_falling_an_interval_behind():
    sock = FakeSocket()
    job = beacon_job(sock, due=10.0, interval=1.0)
    assert job.step(10.25) is False  # a little late: the cadence holds
    assert (job.count, job.due, job.last_at) == (1, 11.0, 10.0)
    assert job.step(12.5) is False  # more than an interval behind: one interval from now
    assert (job.count, job.due, job.last_at) == (2, 13.5, 12.5)
    assert job.step(14.5) is False  # exactly one interval behind is behind too (as the core)
    assert (job.count, job.due, job.last_at) == (3, 15.5, 14.5)
    assert job.step(15.5) is False
    assert (job.count, job.due, job.last_at) == (4, 16.5, 15.5)
    assert len(sock.sent) == 4
    report = job.report()
    assert (report.count, report.last_at) == (4, 15.5)


def test_a_beacon_round_that_fails_is_not_counted_and_keeps_its_due_time():
    sock = FakeSocket()
    sock.fail_to.add(GROUP)
    job = beacon_job(sock, due=10.0, interval=1.0)
    assert job.step(10.5) is True
    assert (job.count, job.due) == (0, 10.0)


@given(
    interval_cs=st.integers(min_value=1, max_value=300),
    started=st.floats(min_value=0, max_value=1e5, allow_nan=False),
    lateness=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=15),
)
def test_the_thread_and_the_core_agree_on_every_due_time(
    interval_cs: int, started: float, lateness: list[float]
) -> None:
    settings = InstanceSettings(
        name="VI_1",
        interface="eth0",
        vrid=51,
        priority=255,
        version=3,
        advert_int=interval_cs / 100,
        garp_master_delay=0.0,
    )
    fed, piloted = VrrpInstance(settings), VrrpInstance(settings)
    for instance in (fed, piloted):
        instance.handle(SourceAddressChanged(address=ME), started)
        instance.handle(Started(), started)
    beacon = piloted.steady()
    assert isinstance(beacon, Beacon)
    job = beacon_job(FakeSocket(), beacon.next_at, beacon.interval)
    for late in lateness:
        now = job.due + late * beacon.interval
        fed.handle(TimerFired(), now)
        assert job.step(now) is False
        assert job.due == fed.next_deadline()
    piloted.handle(job.report(), now)
    assert piloted.next_deadline() == fed.next_deadline()
    assert piloted.stats == fed.stats


# ---- Watch, in the thread -----------------------------------------------------------------------


async def test_a_watch_hands_back_when_its_deadline_passes_in_silence(carried):
    pool, pilot = carried
    sock = pool.add()
    returns = Returns()
    deadline = time.monotonic() + 0.01
    token = pilot.engage("VI_1", watch(deadline), returns)
    assert token is not None
    assert pilot.stats.jobs == {"VI_1": "watch"}
    await wait_for(lambda: returns.calls != [])

    [(name, returned_token, thread, when)] = returns.calls
    assert (name, returned_token, thread) == ("VI_1", token, threading.get_ident())
    assert when >= deadline
    assert threading.get_ident() not in sock.reader_threads  # only the thread read it
    recalled = pilot.recall("VI_1", token)
    assert recalled is not None
    assert recalled.report.count == 0
    assert recalled.held is None


@pytest.mark.parametrize(
    ("interface", "family", "echo", "other"),
    [("eth0", 4, ADVERT, OTHER), ("eth1", 6, ADVERT6, OTHER6)],
    ids=["ipv4", "ipv6"],
)
async def test_a_watch_hands_back_another_packet_with_the_repeats_before_it(
    carried, interface, family, echo, other
):
    pool, pilot = carried
    sock = pool.add(interface, family)
    now = time.monotonic()
    sock.arrive(echo, now - 0.3)
    sock.arrive(echo, now - 0.2)
    sock.arrive(other, now - 0.1)
    sock.arrive(echo, now - 0.05)  # after the other packet: the loop's to read
    returns = Returns()
    steady = watch(now + 0.01, echo=echo, interface=interface, family=family)
    token = pilot.engage("VI_1", steady, returns)
    assert token is not None
    await wait_for(lambda: returns.calls != [])

    assert [c[:2] for c in returns.calls] == [("VI_1", token)]
    recalled = pilot.recall("VI_1", token)
    assert recalled is not None
    assert (recalled.report.count, recalled.report.last_at) == (2, now - 0.2)
    assert recalled.held == HeldPacket(interface, family, other, now - 0.1)
    assert sock.waiting() == 1


async def test_repeats_move_a_watchs_deadline_instead_of_handing_back(carried):
    pool, pilot = carried
    sock = pool.add()
    now = time.monotonic()
    sock.arrive(ADVERT, now - 0.02)
    sock.arrive(ADVERT, now)
    returns = Returns()
    token = pilot.engage("VI_1", watch(now + 0.01, down=3600.0), returns)
    assert token is not None
    await wait_for(lambda: sock.reads >= 1)
    job = pilot._jobs["VI_1"]
    recalled = pilot.recall("VI_1", token)  # under the lock: the step is complete
    await asyncio.sleep(0)  # let a hand-back queued by that step run, if there were one

    assert recalled is not None
    assert (recalled.report.count, recalled.report.last_at) == (2, now)
    assert recalled.held is None
    assert job.due == now + 3600.0
    assert returns.calls == []
    assert pilot.stats.handed_back == 0


def watch_job(sock: FakeSocket, due: float, down: float = 3.0) -> _WatchJob:
    return _WatchJob(
        name="VI_1",
        token=1,
        due=due,
        on_return=lambda name, token: None,
        sock=sock,  # type: ignore[arg-type]
        interface="eth0",
        family=4,
        echo=key(ADVERT),
        master_down_interval=down,
    )


def test_a_watch_step_by_step():
    sock = FakeSocket()
    job = watch_job(sock, due=5.0)
    sock.arrive(ADVERT, 4.0)
    assert job.step(5.0) is False  # heard: Master_Down restarts from the arrival
    assert (job.count, job.last_at, job.due) == (1, 4.0, 7.0)
    sock.arrive(ADVERT, 6.0)
    sock.arrive(OTHER, 6.5)
    sock.arrive(ADVERT, 6.7)
    assert job.step(7.0) is True  # something else: the core must judge it
    assert (job.count, job.last_at, job.due) == (2, 6.0, 9.0)
    assert job.held == (OTHER, 6.5)
    assert sock.waiting() == 1
    report = job.report()
    assert (report.count, report.last_at) == (2, 6.0)


def test_a_watch_step_hands_back_when_the_repeats_stopped_long_ago():
    sock = FakeSocket()
    job = watch_job(sock, due=5.0)
    sock.arrive(ADVERT, 1.5)  # read late: the Master fell silent after it
    assert job.step(5.0) is True
    assert (job.count, job.last_at, job.due, job.held) == (1, 1.5, 4.5, None)
    job = watch_job(FakeSocket(), due=5.0)
    assert job.step(5.0) is True
    assert (job.count, job.held) == (0, None)


# ---- engage, recall, hooks, close -------------------------------------------------------------


async def test_engage_refuses_what_it_cannot_carry(carried):
    pool, pilot = carried
    eager = pool.add("eth0", 4, lazy=False)
    taken = pool.add("eth1", 4)

    def someone_else() -> None:
        raise AssertionError("not ours")

    taken.pilot_hook = someone_else
    returns = Returns()
    deadline = time.monotonic() + 3600
    assert pilot.engage("VI_1", watch(deadline, interface="eth0"), returns) is None
    assert pilot.engage("VI_2", watch(deadline, interface="eth1"), returns) is None
    assert pilot.engage("VI_3", watch(deadline, interface="eth2"), returns) is None
    assert pilot.engage("VI_4", watch(deadline, interface="eth0", family=6), returns) is None
    missing = Beacon(
        sends=(SendAdvert(interface="eth7", source=ME, destination=GROUP, payload=b"x"),),
        interval=1.0,
        next_at=deadline,
    )
    assert pilot.engage("VI_5", missing, returns) is None
    assert pilot.stats.refused == 5
    assert pilot.stats.engaged == 0
    assert eager.pilot_hook is None
    assert taken.pilot_hook is someone_else
    assert not any(pilot.holds(f"VI_{n}") for n in range(1, 6))


async def test_engage_refuses_a_name_it_already_holds(carried):
    pool, pilot = carried
    pool.add()
    returns = Returns()
    deadline = time.monotonic() + 3600
    beacon = Beacon(sends=beacon_sends(GROUP), interval=1.0, next_at=deadline)
    token = pilot.engage("VI_1", beacon, returns)
    assert token is not None
    assert pilot.engage("VI_1", beacon, returns) is None
    assert pilot.recall("VI_1", token) is not None


async def test_recall_with_a_stale_token_or_an_unknown_name_takes_nothing(carried):
    pool, pilot = carried
    pool.add()
    returns = Returns()
    first = pilot.engage("VI_1", watch(time.monotonic() + 3600), returns)
    assert first is not None
    recalled = pilot.recall("VI_1", first)
    assert recalled is not None
    second = pilot.engage("VI_1", watch(time.monotonic() + 3600), returns)
    assert second is not None and second != first

    assert pilot.recall("VI_1", first) is None  # the old engagement's token
    assert pilot.holds("VI_1")
    assert pilot.recall("VI_9") is None
    assert pilot.recall("VI_1", second) is not None
    assert pilot.recall("VI_1", second) is None
    assert not pilot.holds("VI_1")


async def test_a_watch_hooks_its_socket_until_recalled(carried):
    pool, pilot = carried
    sock = pool.add()
    returns = Returns()
    token = pilot.engage("VI_1", watch(time.monotonic() + 3600), returns)
    assert token is not None
    assert sock.pilot_hook is not None
    sock.pilot_hook()  # what VrrpSocket does, in the loop, before it reads the socket itself
    assert [c[:2] for c in returns.calls] == [("VI_1", token)]
    assert pilot.recall("VI_1", token) is not None
    assert sock.pilot_hook is None


async def test_a_beacon_leaves_the_sockets_hooks_alone(carried):
    pool, pilot = carried
    sock = pool.add()
    token = pilot.engage(
        "VI_1",
        Beacon(sends=beacon_sends(GROUP), interval=1.0, next_at=time.monotonic() + 3600),
        Returns(),
    )
    assert token is not None
    assert sock.pilot_hook is None


async def test_close_stops_the_thread_and_releases_the_sockets():
    pool = FakePool()
    pilot = Autopilot(pool)  # type: ignore[arg-type]
    try:
        sock = pool.add()
        token = pilot.engage("VI_1", watch(time.monotonic() + 3600), Returns())
        assert token is not None
        thread = pilot._thread
        assert thread is not None and thread.is_alive()
    finally:
        pilot.close()
    assert not thread.is_alive()
    assert sock.pilot_hook is None
    assert pilot.recall("VI_1", token) is None
    assert pilot.engage("VI_1", watch(time.monotonic() + 3600), Returns()) is None


async def test_close_without_ever_engaging_is_harmless():
    pilot = Autopilot(FakePool())  # type: ignore[arg-type]
    pilot.close()
    pilot.close()
    assert pilot._thread is None
