"""The driver hands steady machines to a pilot and takes them back before anything else touches
them. Machines are real `VrrpInstance`s; the pilot is a fake that only records and answers."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from vipkeeper.core.effects import Effect, RunNotify
from vipkeeper.core.events import (
    Event,
    PacketReceived,
    PriorityChanged,
    Started,
    SteadyReport,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.steady import Beacon, Steady, Watch
from vipkeeper.core.timing import skew_time
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp import InstanceSettings, State, VrrpInstance
from vipkeeper.drivers.vrrp import Driver
from vipkeeper.io.autopilot import HeldPacket
from vipkeeper.testing import adapters
from vipkeeper.testing.builders import ME, advert, instance_settings
from vipkeeper.testing.waits import GUARD, wait_for


def settings(name: str = "VI_1", vrid: int = 51, **overrides: typing.Any) -> InstanceSettings:
    fields = {"interface": f"eth{vrid}", "unicast_src_ip": ME, "garp_master_delay": 0.0}
    return instance_settings(name=name, vrid=vrid, **(fields | overrides))


def owner(name: str = "VI_1", vrid: int = 51, **overrides: typing.Any) -> InstanceSettings:
    """An address owner: Master as soon as it starts, steady once its takeover is done."""
    return settings(name, vrid, priority=255, **overrides)


def packet(priority: int = 150, *, vrid: int = 51, version: int = 2) -> PacketReceived:
    # wire interval 1: 1 s in v2, 1 cs in v3
    return advert(priority=priority, vrid=vrid, version=version, interval=1)


class Recording(VrrpInstance):
    """A real instance that keeps every event it is given, with its time."""

    def __init__(self, settings: InstanceSettings) -> None:
        super().__init__(settings)
        self.seen: list[tuple[Event, float]] = []

    def handle(self, event: Event, now: float) -> list[Effect]:
        self.seen.append((event, now))
        return super().handle(event, now)

    def events(self) -> list[Event]:
        return [event for event, _ in self.seen]


@dataclass
class Recalled:
    report: SteadyReport
    held: HeldPacket | None = None


@dataclass
class FakePilot:
    """Records engage / recall / close; `answers[name]` is what the next recall gives back."""

    log: list[str]
    calls: list[tuple[typing.Any, ...]] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    steady: dict[str, Steady] = field(default_factory=dict)
    on_return: dict[str, Callable[[str, int], None]] = field(default_factory=dict)
    answers: dict[str, Recalled] = field(default_factory=dict)
    closed: bool = False
    tokens: int = 0

    def engage(
        self, name: str, steady: Steady, on_return: Callable[[str, int], None]
    ) -> int | None:
        self.calls.append(("engage", name, steady))
        if self.closed or name in self.held:
            return None
        self.tokens += 1
        self.held[name] = self.tokens
        self.steady[name] = steady
        self.on_return[name] = on_return
        self.log.append(f"engage {name}")
        return self.tokens

    def recall(self, name: str, token: int | None = None) -> Recalled | None:
        self.calls.append(("recall", name, token))
        if self.held.get(name) is None or (token is not None and self.held[name] != token):
            return None
        del self.held[name]
        self.log.append(f"recall {name}")
        return self.answers.pop(name, Recalled(report=SteadyReport(count=0, last_at=0.0)))

    def close(self) -> None:
        self.calls.append(("close",))
        self.closed = True

    def engaged(self, name: str) -> list[Steady]:
        return [call[2] for call in self.calls if call[0] == "engage" and call[1] == name]

    def hand_back(self, name: str) -> None:
        """What the autopilot does through call_soon_threadsafe (here: called directly)."""
        self.on_return[name](name, self.held[name])


@dataclass
class Recorder(adapters.Recorder):
    """The adapters, logging the interface an advert left by and the instance notified."""

    gate: asyncio.Event | None = None  # while set to an unset Event, adding an address waits

    def send(self, *, interface: str, source: str, destination: str, payload: bytes) -> None:
        self.log.append(f"send {interface}")

    async def add(self, address: VirtualAddress) -> None:
        self.log.append(f"adding {address.address}")
        if self.gate is not None:
            await self.gate.wait()
        self.log.append(f"add {address.address}")

    async def notify(self, order: RunNotify) -> None:
        self.log.append(f"notify {order.instance} {order.state}")

    def sends(self, interface: str) -> int:
        return self.log.count(f"send {interface}")


def make_driver(
    machines: dict[str, typing.Any], recorder: Recorder, pilot: FakePilot | None, pilotable=()
) -> Driver:
    routes = {
        (m.settings.interface, 4, m.settings.vrid): (name, None)
        for name, m in machines.items()
        if isinstance(m, VrrpInstance)
    }

    def route(interface: str, family: int, vrid: int) -> tuple[str, str | None] | None:
        return routes.get((interface, family, vrid))

    driver = adapters.make_driver(machines, recorder, route=route, pilot=pilot)
    driver.pilotable = set(pilotable)
    return driver


@dataclass
class Sentinel:
    """A machine the pilot never carries: its TimerFired proves the loop's timer ran."""

    deadline: float | None
    fired: asyncio.Event = field(default_factory=asyncio.Event)

    def handle(self, event: Event, now: float) -> list[Effect]:
        if isinstance(event, TimerFired):
            self.deadline = None
            self.fired.set()
        return []

    def next_deadline(self) -> float | None:
        return self.deadline


async def piloted_master(
    name: str = "VI_1", **overrides: typing.Any
) -> tuple[Driver, Recording, FakePilot, Recorder]:
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    master = Recording(owner(name, **overrides))
    driver = make_driver({name: master}, recorder, pilot, {name})
    driver.feed(name, Started())
    await wait_for(lambda: name in pilot.held)
    return driver, master, pilot, recorder


async def piloted_backup(
    **overrides: typing.Any,
) -> tuple[Driver, Recording, FakePilot, Recorder, PacketReceived]:
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    backup = Recording(settings(**overrides))
    driver = make_driver({"VI_1": backup}, recorder, pilot, {"VI_1"})
    driver.feed("VI_1", Started())
    await driver.drain()
    assert backup.state is State.BACKUP
    advert = packet(150, version=backup.settings.version)
    driver.receive(backup.settings.interface, 4, advert, None)
    await wait_for(lambda: "VI_1" in pilot.held)
    return driver, backup, pilot, recorder, advert


# ---- handing over --------------------------------------------------------------------------------


def answer_recall(pilot: FakePilot, count: int) -> tuple[Beacon, SteadyReport]:
    """The pilot carries VI_1's Beacon; its next recall reports `count` adverts sent at the
    Beacon's cadence from its first due time."""
    beacon = pilot.steady["VI_1"]
    assert isinstance(beacon, Beacon)
    report = SteadyReport(count=count, last_at=beacon.next_at + (count - 1) * beacon.interval)
    pilot.answers["VI_1"] = Recalled(report=report)
    return beacon, report


async def test_a_master_is_handed_over_only_once_its_takeover_is_carried_out():
    recorder = Recorder(gate=asyncio.Event())
    pilot = FakePilot(recorder.log)
    master = Recording(owner())
    driver = make_driver({"VI_1": master}, recorder, pilot, {"VI_1"})
    driver.feed("VI_1", Started())
    assert master.state is State.MASTER
    await wait_for(lambda: "adding 172.16.9.1" in recorder.log)
    await wait_for(lambda: not driver._engage_pending)  # the pass that must not hand it over
    assert master.steady() is not None  # it could be carried, but its AddVips is in flight
    assert pilot.engaged("VI_1") == []

    assert recorder.gate is not None
    recorder.gate.set()
    await wait_for(lambda: "VI_1" in pilot.held)
    [steady] = pilot.engaged("VI_1")
    assert isinstance(steady, Beacon)
    assert steady == master.steady()
    assert steady.next_at == master.next_deadline()
    assert recorder.log == [
        "adding 172.16.9.1",
        "add 172.16.9.1",
        "send eth51",
        "garp 5",
        "notify VI_1 MASTER",
        "engage VI_1",
    ]
    await driver.stop()


async def test_a_master_with_a_garp_burst_still_due_is_not_handed_over():
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    master = Recording(owner(garp_master_delay=3600.0))
    driver = make_driver({"VI_1": master}, recorder, pilot, {"VI_1"})
    driver.feed("VI_1", Started())
    await driver.drain()
    await wait_for(lambda: not driver._engage_pending)
    assert pilot.calls == []
    await driver.stop()


async def test_a_backup_is_handed_over_once_it_heard_its_master():
    driver, backup, pilot, _, advert = await piloted_backup()
    [steady] = pilot.engaged("VI_1")
    assert isinstance(steady, Watch)
    assert steady.echo == (advert.payload, advert.source, advert.destination, advert.ttl)
    assert steady.deadline == backup.next_deadline()
    assert (steady.interface, steady.family) == ("eth51", 4)
    await driver.stop()


async def test_a_machine_that_is_not_pilotable_is_never_handed_over():
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    carried, kept = Recording(owner("VI_1", 51)), Recording(owner("VI_2", 52))
    driver = make_driver({"VI_1": carried, "VI_2": kept}, recorder, pilot, {"VI_1"})
    driver.feed_all(Started())
    await wait_for(lambda: "VI_1" in pilot.held)
    await driver.drain()
    driver.feed("VI_2", TrackChanged(name="nothing", up=True))
    await wait_for(lambda: not driver._engage_pending)
    assert kept.steady() is not None
    assert pilot.engaged("VI_2") == []
    assert [c for c in pilot.calls if c[0] == "engage"] == [("engage", "VI_1", carried.steady())]
    await driver.stop()


# ---- while carried ---------------------------------------------------------------------------


async def test_a_carried_master_gets_no_timer_from_the_loop():
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    master = Recording(owner(version=3, advert_int=0.02))
    driver = make_driver({"VI_1": master}, recorder, pilot, {"VI_1"})
    driver.feed("VI_1", Started())
    await wait_for(lambda: "VI_1" in pilot.held)
    beacon = pilot.steady["VI_1"]
    assert isinstance(beacon, Beacon)
    seen, sent = len(master.seen), recorder.sends("eth51")

    sentinel = Sentinel(deadline=beacon.next_at + 2 * beacon.interval)
    driver.machines["sentinel"] = sentinel
    driver.feed("sentinel", Started())
    await asyncio.wait_for(sentinel.fired.wait(), GUARD)

    assert master.seen[seen:] == []
    assert recorder.sends("eth51") == sent
    assert "VI_1" in pilot.held
    await driver.stop()


@pytest.mark.parametrize(
    "event",
    [
        TrackChanged(name="nothing", up=True),
        PriorityChanged(priority=255),
        TimerFired(),  # spurious: a timer for it can only be stale
    ],
    ids=lambda event: type(event).__name__,
)
async def test_any_event_first_takes_the_master_back_and_applies_the_report(event: Event):
    driver, master, pilot, _ = await piloted_master()
    token = pilot.held["VI_1"]
    beacon, report = answer_recall(pilot, 3)
    sent_before = master.stats.adverts_sent
    seen = len(master.seen)

    driver.feed("VI_1", event)

    assert ("recall", "VI_1", token) in pilot.calls
    assert master.events()[seen:] == [report, event]
    assert master.stats.adverts_sent == sent_before + 3 * len(beacon.sends)
    assert master.next_deadline() == report.last_at + beacon.interval
    await driver.stop()


async def test_a_packet_for_a_carried_master_takes_it_back_first():
    driver, master, pilot, recorder = await piloted_master()
    _, report = answer_recall(pilot, 2)
    seen = len(master.seen)
    lower = packet(100)
    sent = recorder.sends("eth51")

    driver.receive("eth51", 4, lower, None)

    assert master.events()[seen:] == [report, lower]
    assert recorder.sends("eth51") == sent + 1  # the Master answers a lower priority at once
    await driver.stop()


async def test_a_report_given_back_with_a_held_packet_and_an_event_keeps_their_order():
    driver, backup, pilot, _, _ = await piloted_backup()
    loop = asyncio.get_running_loop()
    report = SteadyReport(count=2, last_at=loop.time())
    leaving = packet(0)
    pilot.answers["VI_1"] = Recalled(
        report=report, held=HeldPacket("eth51", 4, leaving, loop.time())
    )
    seen = len(backup.seen)
    change = TrackChanged(name="nothing", up=True)

    driver.feed("VI_1", change)

    assert backup.events()[seen:] == [report, leaving, change]
    await driver.stop()


# ---- handed back -----------------------------------------------------------------------------


async def test_a_watch_handed_back_after_its_deadline_makes_the_backup_master_at_once():
    loop = asyncio.get_running_loop()
    driver, backup, pilot, recorder, _ = await piloted_backup(version=3, advert_int=0.01)
    watch = pilot.steady["VI_1"]
    assert isinstance(watch, Watch)
    await wait_for(lambda: loop.time() > watch.deadline + 0.01)
    assert backup.state is State.BACKUP  # carried: the loop's timer did not fire
    seen = len(backup.seen)

    pilot.hand_back("VI_1")  # the Master fell silent: no repeats, deadline passed

    assert backup.state is State.MASTER  # at once, not one loop iteration later
    events = backup.events()[seen:]
    assert isinstance(events[0], SteadyReport) and events[0].count == 0
    assert isinstance(events[1], TimerFired)
    assert "VI_1" not in pilot.held
    await driver.drain()
    assert "notify VI_1 MASTER" in recorder.log
    await driver.stop()


async def test_a_packet_the_pilot_held_is_fed_after_the_report():
    loop = asyncio.get_running_loop()
    driver, backup, pilot, _, _ = await piloted_backup()
    token = pilot.held["VI_1"]
    arrived = loop.time()
    report = SteadyReport(count=4, last_at=arrived - 0.5)
    leaving = packet(0)
    pilot.answers["VI_1"] = Recalled(report=report, held=HeldPacket("eth51", 4, leaving, arrived))
    seen = len(backup.seen)

    pilot.hand_back("VI_1")

    assert ("recall", "VI_1", token) in pilot.calls
    assert backup.events()[seen:] == [report, leaving]
    fed_at = backup.seen[-1][1]
    assert fed_at >= arrived
    skew = skew_time(version=2, priority=100, master_adver_interval=1.0)
    assert backup.next_deadline() == fed_at + skew  # the Master is leaving: Skew_Time only
    assert backup.stats.adverts_received == 1 + 4 + 1
    await driver.stop()


async def test_a_stale_hand_back_is_ignored():
    driver, master, pilot, _ = await piloted_master()
    old = pilot.held["VI_1"]
    on_return = pilot.on_return["VI_1"]
    driver.feed("VI_1", TrackChanged(name="nothing", up=True))  # taken back...
    await wait_for(lambda: "VI_1" in pilot.held)  # ...and handed over again
    assert pilot.held["VI_1"] != old
    seen = len(master.seen)

    on_return("VI_1", old)  # the first engagement's hand-back, arriving late

    assert master.seen[seen:] == []
    assert "VI_1" in pilot.held
    await driver.stop()


# ---- stopping -------------------------------------------------------------------------------


async def test_stop_takes_every_machine_back_and_closes_the_pilot():
    driver, master, pilot, _ = await piloted_master()
    token = pilot.held["VI_1"]
    beacon, report = answer_recall(pilot, 5)
    sent = master.stats.adverts_sent

    await driver.stop()

    assert pilot.calls[-2:] == [("recall", "VI_1", token), ("close",)]
    assert master.events()[-1] == report
    assert master.stats.adverts_sent == sent + 5 * len(beacon.sends)
    assert pilot.held == {}


async def test_stop_closes_a_pilot_that_carries_nothing():
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    driver = make_driver({"VI_1": Recording(settings())}, recorder, pilot)
    await driver.stop()
    assert pilot.calls == [("close",)]


# ---- found while writing these tests ---------------------------------------------------------


async def test_a_machine_dropped_from_pilotable_is_taken_back():
    driver, _, pilot, _, _ = await piloted_backup()
    driver.pilotable = set()  # what Daemon._start does when a reload shares the socket
    await asyncio.sleep(0)
    try:
        assert "VI_1" not in pilot.held
    finally:
        await driver.stop()


async def test_a_hand_over_queued_before_pilotable_changed_does_not_happen():
    recorder = Recorder()
    pilot = FakePilot(recorder.log)
    backup = Recording(settings())
    driver = make_driver({"VI_1": backup}, recorder, pilot, {"VI_1"})
    driver.feed("VI_1", Started())
    await driver.drain()
    driver.receive("eth51", 4, packet(150), None)  # queues the hand-over
    driver.pilotable = set()
    await wait_for(lambda: not driver._engage_pending)
    try:
        assert pilot.engaged("VI_1") == []
    finally:
        await driver.stop()
