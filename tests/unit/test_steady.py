"""Steady states (`core.steady`): a `SteadyReport` leaves an instance exactly where the
repetition it describes, handled event by event, would have left it."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipkeeper.core import vrrp_wire
from vipkeeper.core.effects import SendAdvert
from vipkeeper.core.events import (
    PacketReceived,
    PriorityChanged,
    ShutdownRequested,
    SteadyReport,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.steady import Beacon, Watch
from vipkeeper.core.timing import master_down_interval
from vipkeeper.core.vrrp import InstanceSettings, State, VrrpInstance
from vipkeeper.testing import builders
from vipkeeper.testing.builders import ME
from vipkeeper.testing.builders import instance_settings as make

PEERS = ("192.168.0.57", "192.168.0.58")


def start(settings: InstanceSettings, now: float = 0.0, address: str | None = ME) -> VrrpInstance:
    return builders.start(settings, now, address)[0]


def packet(priority: int = 150, **fields: typing.Any) -> PacketReceived:
    return builders.advert(priority=priority, **fields)


def snapshot(instance: VrrpInstance) -> tuple[object, ...]:
    return (
        instance.state,
        instance.next_deadline(),
        dataclasses.replace(instance.stats, dropped=dict(instance.stats.dropped)),
        instance.steady(),
        instance.master_address,
        instance.master_adver_interval,
    )


def thread_due(due: float, now: float, interval: float) -> tuple[float, float]:
    """What `io.autopilot._BeaconJob.step(now)` computes after a send due at `due`: the next due
    time, and the `last_at` it would report."""
    following = due + interval
    next_due = following if following > now else now + interval
    return next_due, next_due - interval


# ---- a Master: Beacon -------------------------------------------------------------------------

master_settings = st.builds(
    lambda version, interval, unicast: make(
        priority=255,
        version=version,
        advert_int=float(interval) if version == 2 else interval / 100,
        unicast_peers=PEERS if unicast else (),
        garp_master_delay=0.0,
    ),
    version=st.sampled_from([2, 3]),
    interval=st.integers(min_value=1, max_value=5),
    unicast=st.booleans(),
)


@given(
    settings=master_settings,
    started=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    lateness=st.lists(st.floats(min_value=0, max_value=2.5), min_size=1, max_size=12),
)
def test_a_master_report_equals_handling_each_adver_timer(
    settings: InstanceSettings, started: float, lateness: list[float]
) -> None:
    fed = start(settings, started)
    piloted = start(settings, started)
    assert fed.state is State.MASTER
    beacon = piloted.steady()
    assert isinstance(beacon, Beacon)
    assert beacon.next_at == fed.next_deadline()
    assert beacon.interval == settings.advert_interval

    sent: list[SendAdvert] = []
    due, last_at, now = beacon.next_at, 0.0, started
    for late in lateness:
        # The thread wakes at or after the due time; `late` is in intervals.
        now = due + late * beacon.interval
        assert fed.next_deadline() == due
        sent += [e for e in fed.handle(TimerFired(), now) if isinstance(e, SendAdvert)]
        due, last_at = thread_due(due, now, beacon.interval)
    effects = piloted.handle(SteadyReport(count=len(lateness), last_at=last_at), now)

    assert effects == []
    assert sent == list(beacon.sends) * len(lateness)
    assert piloted.next_deadline() == fed.next_deadline() == due
    assert piloted.stats == fed.stats
    assert piloted.stats.adverts_sent == len(beacon.sends) * (len(lateness) + 1)
    assert piloted.steady() == fed.steady()


def test_a_master_beacon_names_every_destination_of_its_advertisement():
    instance = start(make(priority=255, unicast_peers=PEERS, garp_master_delay=0.0), 10.0)
    beacon = instance.steady()
    assert isinstance(beacon, Beacon)
    assert [s.destination for s in beacon.sends] == list(PEERS)
    assert all(s.source == ME and s.interface == "eth0" for s in beacon.sends)
    for send in beacon.sends:
        advert = vrrp_wire.decode(send.payload, source=send.source, destination=send.destination)
        assert advert.priority == 255
    assert beacon.next_at == 11.0


# ---- a Backup: Watch --------------------------------------------------------------------------


@st.composite
def backup_runs(draw: st.DrawFn) -> tuple[InstanceSettings, PacketReceived, list[float]]:
    version = draw(st.sampled_from([2, 3]))
    mismatch = draw(st.booleans())
    addresses = ("172.16.9.99",) if mismatch else ("172.16.9.1",)
    if version == 2:
        settings = make(version=2)
        advert = packet(version=2, addresses=addresses)
        master_interval = 1.0
    else:
        settings = make(version=3, advert_int=1.0)
        centiseconds = draw(st.integers(min_value=1, max_value=300))
        advert = packet(version=3, interval=centiseconds, addresses=addresses)
        master_interval = centiseconds / 100
    down = master_down_interval(
        version=version, priority=settings.priority, master_adver_interval=master_interval
    )
    gaps = draw(
        st.lists(st.floats(min_value=down / 100, max_value=down * 0.99), min_size=1, max_size=12)
    )
    return settings, advert, gaps


def backup_with_echo(
    settings: InstanceSettings, advert: PacketReceived, at: float = 0.5
) -> VrrpInstance:
    instance = start(settings)
    instance.handle(advert, at)
    assert instance.state is State.BACKUP
    return instance


@given(run=backup_runs())
def test_a_backup_report_equals_handling_each_repeat(
    run: tuple[InstanceSettings, PacketReceived, list[float]],
) -> None:
    settings, advert, gaps = run
    fed = backup_with_echo(settings, advert)
    piloted = backup_with_echo(settings, advert)
    watch = piloted.steady()
    assert isinstance(watch, Watch)
    assert watch.deadline == fed.next_deadline()
    assert watch.echo == (advert.payload, advert.source, advert.destination, advert.ttl)
    assert (watch.interface, watch.family) == ("eth0", 4)

    now = 0.5
    for gap in gaps:
        now += gap
        repeat = dataclasses.replace(advert)  # the same bytes, a new object, as a socket reads
        assert fed.handle(repeat, now) == []
    effects = piloted.handle(SteadyReport(count=len(gaps), last_at=now), now)

    assert effects == []
    assert fed.state is piloted.state is State.BACKUP
    assert piloted.next_deadline() == fed.next_deadline() == now + watch.master_down_interval
    assert piloted.stats.adverts_received == fed.stats.adverts_received == len(gaps) + 1
    assert piloted.stats.address_list_mismatch == fed.stats.address_list_mismatch
    assert piloted.stats == fed.stats
    assert piloted.steady() == fed.steady()


def test_after_a_report_the_backup_still_recognises_the_repeat_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
):
    advert = packet(addresses=("172.16.9.99",))
    instance = backup_with_echo(make(), advert)
    down = master_down_interval(version=2, priority=100, master_adver_interval=1.0)
    instance.handle(SteadyReport(count=5, last_at=3.0), 3.2)
    assert instance.next_deadline() == 3.0 + down
    assert instance.stats.adverts_received == 6
    assert instance.stats.address_list_mismatch == 6

    def no_decoding(*args: object, **kwargs: object) -> typing.NoReturn:
        raise AssertionError("the repeat was decoded again: the echo was lost")

    monkeypatch.setattr(vrrp_wire, "decode", no_decoding)
    assert instance.handle(dataclasses.replace(advert), 4.0) == []
    assert instance.next_deadline() == 4.0 + down
    assert instance.stats.adverts_received == 7
    assert instance.stats.address_list_mismatch == 7
    watch = instance.steady()
    assert isinstance(watch, Watch)
    assert watch.deadline == 4.0 + down
    assert watch.master_down_interval == down


# ---- no steady state ----------------------------------------------------------------------------


def in_initialize() -> VrrpInstance:
    return VrrpInstance(make())


def stopped() -> VrrpInstance:
    instance = start(make(priority=255, garp_master_delay=0.0))
    instance.handle(ShutdownRequested(), 1.0)
    return instance


def in_fault_without_source() -> VrrpInstance:
    return start(make(), address=None)


def in_fault_by_track() -> VrrpInstance:
    instance = start(make(track_interfaces={"eth1": 0}))
    instance.handle(TrackChanged(name="eth1", up=False), 1.0)
    return instance


def master_with_second_garp_burst_pending() -> VrrpInstance:
    return start(make(priority=255, garp_master_delay=5.0))


def master_with_garp_refresh_pending() -> VrrpInstance:
    return start(make(priority=255, garp_master_delay=0.0, garp_master_refresh=60.0))


def master_after_a_lower_priority_master() -> VrrpInstance:
    # Answering a lower-priority Master arms a delayed burst of gratuitous ARP.
    instance = start(make(priority=255, garp_master_delay=0.0))
    instance.handle(packet(priority=100), 0.5)
    return instance


def backup_just_started() -> VrrpInstance:
    return start(make())


def backup_that_discarded_a_lower_priority() -> VrrpInstance:
    return backup_with_echo(make(), packet(priority=50))


def backup_told_master_leaves() -> VrrpInstance:
    instance = backup_with_echo(make(), packet(priority=150))
    instance.handle(packet(priority=0), 1.0)
    return instance


def backup_after_another_event() -> VrrpInstance:
    instance = backup_with_echo(make(), packet(priority=150))
    instance.handle(PriorityChanged(priority=90), 1.0)
    return instance


@pytest.mark.parametrize(
    ("build", "state"),
    [
        (in_initialize, State.INITIALIZE),
        (stopped, State.INITIALIZE),
        (in_fault_without_source, State.FAULT),
        (in_fault_by_track, State.FAULT),
        (master_with_second_garp_burst_pending, State.MASTER),
        (master_with_garp_refresh_pending, State.MASTER),
        (master_after_a_lower_priority_master, State.MASTER),
        (backup_just_started, State.BACKUP),
        (backup_that_discarded_a_lower_priority, State.BACKUP),
        (backup_told_master_leaves, State.BACKUP),
        (backup_after_another_event, State.BACKUP),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_no_steady_state(build: typing.Callable[[], VrrpInstance], state: State):
    instance = build()
    assert instance.state is state
    assert instance.steady() is None


def test_a_master_is_steady_once_its_second_garp_burst_is_done():
    instance = master_with_second_garp_burst_pending()
    while (deadline := instance.next_deadline()) is not None and deadline < 5.0:
        instance.handle(TimerFired(), deadline)
        assert instance.steady() is None
    instance.handle(TimerFired(), 5.0)
    beacon = instance.steady()
    assert isinstance(beacon, Beacon)
    assert beacon.next_at == instance.next_deadline() == 6.0


# ---- a report of nothing ------------------------------------------------------------------------


def master_steady() -> VrrpInstance:
    return start(make(priority=255, garp_master_delay=0.0))


def backup_steady() -> VrrpInstance:
    return backup_with_echo(make(), packet(addresses=("172.16.9.99",)))


@pytest.mark.parametrize(
    "build",
    [
        master_steady,
        backup_steady,
        in_initialize,
        in_fault_by_track,
        master_with_second_garp_burst_pending,
        backup_just_started,
    ],
    ids=lambda build: build.__name__,
)
@pytest.mark.parametrize("last_at", [0.0, 0.75, 1e6])
def test_a_report_of_no_repeats_changes_nothing(
    build: typing.Callable[[], VrrpInstance], last_at: float
):
    instance = build()
    before = snapshot(instance)
    assert instance.handle(SteadyReport(count=0, last_at=last_at), 2.0) == []
    assert snapshot(instance) == before


@pytest.mark.parametrize("build", [in_initialize, in_fault_by_track], ids=lambda b: b.__name__)
def test_a_report_where_nothing_repeats_changes_nothing(build: typing.Callable[[], VrrpInstance]):
    instance = build()
    before = snapshot(instance)
    assert instance.handle(SteadyReport(count=4, last_at=1.5), 2.0) == []
    assert snapshot(instance) == before
