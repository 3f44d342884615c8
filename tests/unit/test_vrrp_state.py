"""The VRRP state machine, driven by hand with `now` (RFC 3768 §6, RFC 9568 §6).

One module for the one machine (core/vrrp.py, one module on purpose): its length follows the
transition table's rows, each with its own tests.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipkeeper.core import events
from vipkeeper.core.effects import (
    AddVips,
    DelVips,
    ReportTransition,
    RunNotify,
    SendAdvert,
    SendGratuitous,
    VirtualAddress,
)
from vipkeeper.core.events import (
    PacketReceived,
    PriorityChanged,
    ShutdownRequested,
    SourceAddressChanged,
    Started,
    SyncGroupRequested,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.timing import master_down_interval, skew_time
from vipkeeper.core.vrrp import (
    InstanceSettings,
    ProtocolError,
    State,
    VrrpInstance,
    transitions,
)
from vipkeeper.core.vrrp_numbers import MULTICAST_V6
from vipkeeper.core.vrrp_wire import (
    AuthType,
    decode,
    pack_password,
)
from vipkeeper.testing import FakeLan
from vipkeeper.testing.builders import ME, PEER, VIP, start
from vipkeeper.testing.builders import advert as packet
from vipkeeper.testing.builders import instance_settings as make

VIP6 = VirtualAddress(address="2001:db8::1", prefixlen=128, dev="eth0")
LOWER_PEER = "192.168.0.10"


def of(kind, effects):
    return [e for e in effects if isinstance(e, kind)]


def become_master(settings: InstanceSettings):
    instance, _ = start(settings)
    deadline = instance.next_deadline()
    assert deadline is not None
    return instance, instance.handle(TimerFired(), deadline), deadline


def advert_priorities(effects) -> list[int]:
    return [
        decode(e.payload, source=e.source, destination=e.destination).priority
        for e in of(SendAdvert, effects)
    ]


# ---- startup (RFC 9568 §6.4.1) ------------------------------------------------------------


def test_non_owner_starts_as_backup_waiting_master_down_interval():
    instance, out = start(make(priority=100))
    assert instance.state is State.BACKUP
    assert instance.next_deadline() == master_down_interval(
        version=2, priority=100, master_adver_interval=1
    )
    assert of(ReportTransition, out) == [
        ReportTransition(instance="VI_1", old="INITIALIZE", new="BACKUP", reason="startup")
    ]
    assert of(RunNotify, out) == [RunNotify(instance="VI_1", state="BACKUP", priority=100)]
    assert not of(AddVips, out)


def test_address_owner_becomes_master_at_once():
    instance, out = start(make(priority=255))
    assert instance.state is State.MASTER
    assert of(AddVips, out) == [AddVips(addresses=(VIP,))]
    assert advert_priorities(out) == [255]
    assert of(SendGratuitous, out) == [SendGratuitous(addresses=(VIP,), count=5)]
    assert of(RunNotify, out)[-1].state == "MASTER"
    assert instance.stats.became_master == 1


def test_state_master_hint_claims_mastership_after_one_interval_of_silence():
    instance, _ = start(make(initial_state=State.MASTER, advert_int=2))
    assert instance.state is State.BACKUP
    assert instance.next_deadline() == 2.0


def test_without_a_source_address_the_instance_waits_in_fault():
    instance, out = start(make(), address=None)
    assert instance.state is State.FAULT
    assert of(ReportTransition, out)[0].reason == "no source address on eth0"
    out = instance.handle(SourceAddressChanged(address=ME), 1.0)
    assert instance.state is State.BACKUP
    assert instance.source_address == ME


# ---- Backup (RFC 9568 §6.4.2) -------------------------------------------------------------


def test_backup_takes_over_after_master_down_interval():
    instance, _ = start(make())
    deadline = instance.next_deadline()
    assert deadline is not None
    assert instance.handle(TimerFired(), deadline - 0.001) == []
    out = instance.handle(TimerFired(), deadline)
    assert instance.state is State.MASTER
    assert of(ReportTransition, out)[0].reason == "master down timer expired"
    assert of(AddVips, out) and advert_priorities(out) == [100]
    assert instance.next_deadline() == deadline + 1.0  # Adver_Timer


def test_backup_resets_master_down_timer_on_higher_or_equal_priority_advert():
    instance, _ = start(make(priority=100))
    mdi = master_down_interval(version=2, priority=100, master_adver_interval=1)
    for now, prio in [(2.0, 150), (4.0, 100)]:
        assert instance.handle(packet(priority=prio), now) == []
        assert instance.next_deadline() == now + mdi
    assert instance.master_address == PEER
    assert instance.stats.adverts_received == 2


def test_preempting_backup_discards_lower_priority_advert_and_takes_over():
    instance, _ = start(make(priority=200))
    first = instance.next_deadline()
    instance.handle(packet(priority=100), 1.0)
    assert instance.next_deadline() == first
    assert instance.stats.lower_priority_discarded == 1


def test_nopreempt_backup_keeps_a_lower_priority_master():
    instance, _ = start(make(priority=200, nopreempt=True))
    instance.handle(packet(priority=100), 1.0)
    assert instance.next_deadline() == 1.0 + master_down_interval(
        version=2, priority=200, master_adver_interval=1
    )


def test_priority_zero_advert_cuts_master_down_timer_to_skew_time():
    instance, _ = start(make(priority=100))
    instance.handle(packet(priority=0), 2.0)
    assert instance.next_deadline() == 2.0 + skew_time(
        version=2, priority=100, master_adver_interval=1
    )
    assert instance.stats.priority_zero_received == 1


def test_v3_backup_learns_master_advertisement_interval():
    instance, _ = start(make(version=3, advert_int=1.0, priority=100))
    instance.handle(packet(priority=200, version=3, interval=300), 1.0)
    assert instance.master_adver_interval == 3.0
    assert instance.next_deadline() == 1.0 + 9.0 + (156 * 3.0) / 256


def test_preempt_delay_holds_preemption_after_startup():
    instance, _ = start(make(priority=200, preempt_delay=10))
    mdi = master_down_interval(version=2, priority=200, master_adver_interval=1)
    instance.handle(packet(priority=100), 5.0)
    assert instance.next_deadline() == 5.0 + mdi  # still accepting the lower master
    instance.handle(packet(priority=100), 10.5)
    assert instance.next_deadline() == 5.0 + mdi  # delay over: discard and preempt
    assert instance.stats.lower_priority_discarded == 1


# ---- Master (RFC 9568 §6.4.3) -------------------------------------------------------------


def test_master_sends_an_advertisement_every_interval():
    instance, _, became = become_master(make(version=3, advert_int=0.5))
    sent = []
    now = became
    for _ in range(4):
        now = instance.next_deadline()
        sent += advert_priorities(instance.handle(TimerFired(), now))
    assert sent == [100] * 4
    assert now == pytest.approx(became + 2.0)


def test_master_steps_down_on_higher_priority_and_removes_vips():
    instance, _, now = become_master(make(priority=100))
    out = instance.handle(packet(priority=150), now + 0.2)
    assert instance.state is State.BACKUP
    assert of(DelVips, out) == [DelVips(addresses=(VIP,))]
    assert of(ReportTransition, out) == [
        ReportTransition(
            instance="VI_1", old="MASTER", new="BACKUP", reason=f"higher priority 150 from {PEER}"
        )
    ]
    assert of(RunNotify, out)[-1].state == "BACKUP"
    assert instance.next_deadline() == now + 0.2 + master_down_interval(
        version=2, priority=100, master_adver_interval=1
    )


def test_equal_priority_tie_is_won_by_the_higher_primary_address():
    instance, _, now = become_master(make(priority=100))
    out = instance.handle(packet(source=LOWER_PEER, priority=100), now)
    assert instance.state is State.MASTER
    assert advert_priorities(out) == [100]  # answered so the other master steps down
    out = instance.handle(packet(source=PEER, priority=100), now)
    assert instance.state is State.BACKUP
    assert "equal priority 100 from higher address" in of(ReportTransition, out)[0].reason


def test_master_answers_priority_zero_with_an_immediate_advertisement():
    instance, _, now = become_master(make())
    out = instance.handle(packet(priority=0), now + 0.3)
    assert advert_priorities(out) == [100]
    assert instance.next_deadline() == now + 1.3


def test_lower_prio_no_advert_keeps_quiet_on_lower_priority():
    settings = make(priority=200, lower_prio_no_advert=True, garp_lower_prio_repeat=0)
    instance, _, now = become_master(settings)
    assert instance.handle(packet(priority=100), now) == []
    assert instance.state is State.MASTER


def test_master_hearing_a_lower_priority_master_announces_its_addresses_again():
    settings = make(priority=200, garp_lower_prio_repeat=4, garp_lower_prio_delay=2)
    instance, _, now = become_master(settings)
    out = instance.handle(packet(priority=100), now + 0.1)
    assert advert_priorities(out) == [200]
    assert of(SendGratuitous, out) == [SendGratuitous(addresses=(VIP,), count=4)]
    # Each lower-priority advert gets its burst (keepalived answers every one): a second brief
    # Master within the delay drew its clients away too.
    again = instance.handle(packet(priority=100), now + 1.0)
    assert of(SendGratuitous, again) == [SendGratuitous(addresses=(VIP,), count=4)]
    # The delayed second burst comes once, the delay after the last answer.
    bursts = []
    while (deadline := instance.next_deadline()) is not None and deadline <= now + 3.2:
        fired = of(SendGratuitous, instance.handle(TimerFired(), deadline))
        bursts += [(round(deadline - now, 3), burst) for burst in fired]
    assert bursts == [(3.0, SendGratuitous(addresses=(VIP,), count=4))]


def test_higher_prio_send_advert_says_its_priority_before_stepping_down():
    instance, _, now = become_master(make(priority=100, higher_prio_send_advert=True))
    out = instance.handle(packet(priority=200), now + 0.1)
    assert advert_priorities(out) == [100]
    kinds = [type(e) for e in out]
    assert kinds.index(SendAdvert) < kinds.index(DelVips)
    assert instance.state is State.BACKUP


def test_without_higher_prio_send_advert_a_master_steps_down_silently():
    instance, _, now = become_master(make(priority=100))
    out = instance.handle(packet(priority=200), now + 0.1)
    assert advert_priorities(out) == []
    assert instance.state is State.BACKUP


def test_gratuitous_arp_second_burst_and_refresh():
    settings = make(
        garp_master_delay=5,
        garp_master_repeat=3,
        garp_master_refresh=60,
        garp_master_refresh_repeat=2,
    )
    instance, out, became = become_master(settings)
    assert of(SendGratuitous, out) == [SendGratuitous(addresses=(VIP,), count=3)]
    bursts: list[tuple[float, int]] = []
    while (now := instance.next_deadline()) is not None and now <= became + 130:
        bursts += [
            (now - became, g.count) for g in of(SendGratuitous, instance.handle(TimerFired(), now))
        ]
    assert bursts == [(5.0, 3), (60.0, 2), (120.0, 2)]


def test_unicast_master_sends_one_advert_per_peer():
    peers = ("192.168.0.57", "192.168.0.58")
    _, out, _ = become_master(make(unicast_peers=peers, version=3))
    adverts = of(SendAdvert, out)
    assert [a.destination for a in adverts] == list(peers)
    assert all(a.source == ME and a.interface == "eth0" for a in adverts)
    for advert in adverts:  # v3 checksum is per destination
        decode(advert.payload, source=advert.source, destination=advert.destination)


def test_v3_ipv6_instance_sends_to_the_ipv6_group():
    settings = make(version=3, family=6, virtual_addresses=(VIP6,))
    instance, out = start(settings, address="fe80::53")
    out = instance.handle(TimerFired(), instance.next_deadline())
    assert [a.destination for a in of(SendAdvert, out)] == [MULTICAST_V6]
    instance.handle(
        packet(source="fe80::99", priority=200, version=3, addresses=("2001:db8::1",)), 5
    )
    assert instance.state is State.BACKUP


def test_v2_password_is_sent_and_checked():
    settings = make(auth_pass="secret")
    instance, out, now = become_master(settings)
    sent = of(SendAdvert, out)[0]
    decoded = decode(sent.payload, source=sent.source, destination=sent.destination)
    assert (decoded.auth_type, decoded.auth_data) == (AuthType.PASS, pack_password("secret"))
    good = packet(priority=200, auth_type=AuthType.PASS, auth_data=pack_password("secret"))
    instance.handle(good, now)
    assert instance.state is State.BACKUP


# ---- shutdown (RFC 9568 §6.4.3) -----------------------------------------------------------


def test_master_shutdown_sends_priority_zero_and_removes_vips():
    instance, _, now = become_master(make())
    out = instance.handle(ShutdownRequested(), now + 0.5)
    assert advert_priorities(out) == [0]
    assert of(DelVips, out) == [DelVips(addresses=(VIP,))]
    assert of(RunNotify, out) == [RunNotify(instance="VI_1", state="STOP", priority=100)]
    assert instance.state is State.INITIALIZE
    assert instance.next_deadline() is None
    assert instance.stats.priority_zero_sent == 1


def test_backup_shutdown_only_notifies_stop():
    instance, _ = start(make())
    out = instance.handle(ShutdownRequested(), 1.0)
    assert of(SendAdvert, out) == [] and of(DelVips, out) == []
    assert [n.state for n in of(RunNotify, out)] == ["STOP"]


def test_a_stopped_instance_can_start_again():
    instance, _, now = become_master(make())
    instance.handle(ShutdownRequested(), now)
    instance.handle(Started(), now + 1)
    assert instance.state is State.BACKUP


# ---- tracking -----------------------------------------------------------------------------


def test_unweighted_interface_down_sends_master_to_fault_and_back_to_backup():
    instance, _, now = become_master(make(track_interfaces={"eth1": 0}))
    out = instance.handle(TrackChanged(name="eth1", up=False), now)
    assert instance.state is State.FAULT
    assert of(DelVips, out) == [DelVips(addresses=(VIP,))]
    assert of(ReportTransition, out)[0].reason == "interface eth1 down"
    assert of(RunNotify, out)[-1].state == "FAULT"
    assert instance.next_deadline() is None
    out = instance.handle(TrackChanged(name="eth1", up=True, kind="interface"), now + 1)
    assert instance.state is State.BACKUP
    assert of(RunNotify, out)[-1].state == "BACKUP"


def test_master_entering_fault_sends_priority_zero_before_removing_its_vips():
    instance, _, now = become_master(make(track_scripts={"chk": 0}))
    out = instance.handle(TrackChanged(name="chk", up=False, kind="script"), now)
    assert instance.state is State.FAULT
    assert advert_priorities(out) == [0]
    assert out.index(of(SendAdvert, out)[0]) < out.index(of(DelVips, out)[0])
    assert instance.stats.priority_zero_sent == 1


def test_backup_entering_fault_sends_nothing():
    instance, _ = start(make(track_scripts={"chk": 0}))
    out = instance.handle(TrackChanged(name="chk", up=False, kind="script"), 1)
    assert instance.state is State.FAULT
    assert of(SendAdvert, out) == []


def test_owner_leaving_fault_goes_straight_to_master():
    instance, _ = start(make(priority=255, track_scripts={"chk": 0}))
    instance.handle(TrackChanged(name="chk", up=False), 1)
    assert instance.state is State.FAULT
    instance.handle(TrackChanged(name="chk", up=True), 2)
    assert instance.state is State.MASTER


def test_script_down_before_start_starts_in_fault():
    instance = VrrpInstance(make(track_scripts={"chk": 0}))
    instance.handle(SourceAddressChanged(address=ME), 0)
    instance.handle(TrackChanged(name="chk", up=False, kind="script"), 0)
    instance.handle(Started(), 0)
    assert instance.state is State.FAULT


def test_weighted_tracks_move_the_advertised_priority():
    settings = make(priority=100, track_interfaces={"eth1": -30}, track_scripts={"chk": 20})
    instance, _, now = become_master(settings)
    assert instance.priority == 120
    instance.handle(TrackChanged(name="eth1", up=False), now)
    assert instance.state is State.MASTER
    out = instance.handle(TimerFired(), instance.next_deadline())
    assert advert_priorities(out) == [90]


def test_effective_priority_stays_within_1_and_254():
    instance, _ = start(make(priority=250, track_scripts={"a": 100}))
    assert instance.priority == 254
    instance.handle(PriorityChanged(priority=5), 1)
    instance.handle(TrackChanged(name="a", up=False), 1)
    assert instance.priority == 5
    low, _ = start(make(priority=5, track_scripts={"b": -100}))
    low.handle(TrackChanged(name="b", up=False), 1)
    assert low.priority == 1


def test_untracked_name_changes_nothing():
    instance, _ = start(make())
    assert instance.handle(TrackChanged(name="eth9", up=False), 1) == []
    assert instance.state is State.BACKUP


# ---- receive checks (RFC 3768 §7.1, RFC 9568 §7.1) -----------------------------------------


def _corrupt(p: PacketReceived) -> PacketReceived:
    payload = bytearray(p.payload)
    payload[6] ^= 0xFF
    return dataclasses.replace(p, payload=bytes(payload))


DROPS = [
    ("ttl", {}, packet(priority=200, ttl=64)),
    ("checksum", {}, _corrupt(packet(priority=200))),
    ("too_short", {}, dataclasses.replace(packet(priority=200), payload=b"\x21\x33")),
    ("version_mismatch", {}, packet(priority=200, version=3)),
    ("vrid_mismatch", {}, packet(priority=200, vrid=52)),
    ("interval_mismatch", {}, packet(priority=200, interval=2)),
    ("auth_type", {"auth_pass": "pw"}, packet(priority=200)),
    ("auth_type", {}, packet(priority=200, auth_type=AuthType.AH)),
    ("auth_type_invalid", {"auth_pass": "pw"}, packet(priority=200, auth_type=3)),
    ("auth_type_invalid", {}, packet(priority=200, auth_type=255)),
    (
        "auth_mismatch",
        {"auth_pass": "pw"},
        packet(priority=200, auth_type=AuthType.PASS, auth_data=pack_password("nope")),
    ),
    ("unicast_peer", {"unicast_peers": ("192.168.0.99",)}, packet(priority=200)),
    ("own_advert", {}, packet(source=ME, priority=200)),
    ("family", {}, packet(source="fe80::1", priority=200, version=3, addresses=("2001:db8::1",))),
    ("interval_invalid", {"version": 3}, packet(priority=200, version=3, interval=0)),
]


@pytest.mark.parametrize(
    ("reason", "overrides", "bad"), DROPS, ids=[f"{d[0]}-{n}" for n, d in enumerate(DROPS)]
)
def test_invalid_packets_are_dropped_and_counted(reason, overrides, bad):
    instance, _ = start(make(**overrides))
    deadline = instance.next_deadline()
    assert instance.handle(bad, 1.0) == []
    assert instance.next_deadline() == deadline
    assert instance.stats.dropped == {reason: 1}
    assert instance.stats.adverts_received == 0


def test_address_list_mismatch_is_counted_but_the_advert_still_counts():
    instance, _ = start(make())
    instance.handle(packet(priority=200, addresses=("10.9.9.9",)), 1.0)
    assert instance.stats.address_list_mismatch == 1
    assert instance.stats.dropped == {}
    assert instance.master_address == PEER


def test_unicast_backup_accepts_adverts_from_configured_peers():
    instance, _ = start(make(unicast_peers=(PEER,)))
    instance.handle(packet(priority=200, destination=ME), 1.0)
    assert instance.stats.adverts_received == 1


def test_packets_before_start_and_in_fault_are_counted_as_dropped():
    instance = VrrpInstance(make(track_interfaces={"eth1": 0}))
    instance.handle(packet(priority=200), 0)
    instance.handle(SourceAddressChanged(address=ME), 0)
    instance.handle(TrackChanged(name="eth1", up=False), 0)
    instance.handle(Started(), 0)
    instance.handle(packet(priority=200), 1)
    assert instance.stats.dropped == {"not_running": 1, "fault_state": 1}


# ---- the transition table -----------------------------------------------------------------

EVENT_TYPES = typing.get_args(events.Event)
SAMPLE_EVENTS = {
    events.Started: Started(),
    events.PacketReceived: packet(priority=200),
    events.TimerFired: TimerFired(),
    events.TrackChanged: TrackChanged(name="eth1", up=True),
    events.SourceAddressChanged: SourceAddressChanged(address=ME),
    events.ShutdownRequested: ShutdownRequested(),
    events.PriorityChanged: PriorityChanged(priority=120),
    events.SyncGroupRequested: SyncGroupRequested(group="G", state="BACKUP", reason="test"),
    events.SteadyReport: events.SteadyReport(count=0, last_at=0.0),
    events.Reconfigured: events.Reconfigured(settings=make(priority=120)),  # see _sample
}


def _sample(instance: VrrpInstance, event_type: type) -> object:
    if event_type is events.Reconfigured:  # a change this very instance can take in place
        return events.Reconfigured(settings=dataclasses.replace(instance.settings, priority=120))
    return SAMPLE_EVENTS[event_type]


def instance_in(state: State) -> VrrpInstance:
    if state is State.INITIALIZE:
        return VrrpInstance(make())
    if state is State.BACKUP:
        return start(make())[0]
    if state is State.MASTER:
        return start(make(priority=255))[0]
    instance, _ = start(make(track_interfaces={"eth1": 0}))
    instance.handle(TrackChanged(name="eth1", up=False), 0)
    return instance


def test_every_event_type_has_a_sample():
    assert set(SAMPLE_EVENTS) == set(EVENT_TYPES)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_each_state_event_pair_is_in_the_table_or_a_protocol_error(state, event_type):
    instance = instance_in(state)
    assert instance.state is state
    event = _sample(instance, event_type)
    if (state, event_type) in transitions():
        assert isinstance(instance.handle(event, 1.0), list)
    else:
        with pytest.raises(ProtocolError) as caught:
            instance.handle(event, 1.0)
        assert caught.value.state is state


def test_the_table_refuses_a_second_start_and_a_timer_never_armed():
    missing = {(s, t) for s in State for t in EVENT_TYPES} - transitions()
    assert missing == {
        (State.BACKUP, Started),
        (State.MASTER, Started),
        (State.FAULT, Started),
        (State.INITIALIZE, TimerFired),
    }


def test_unknown_event_objects_are_protocol_errors():
    with pytest.raises(ProtocolError):
        VrrpInstance(make()).handle(object(), 0.0)  # type: ignore[arg-type]


any_event = st.one_of(
    st.just(Started()),
    st.just(TimerFired()),
    st.just(ShutdownRequested()),
    st.builds(
        lambda p, s: packet(source=s, priority=p),
        st.integers(0, 255),
        st.sampled_from([PEER, LOWER_PEER, ME]),
    ),
    st.builds(
        lambda n, up: TrackChanged(name=n, up=up),
        st.sampled_from(["eth1", "chk", "x"]),
        st.booleans(),
    ),
    st.builds(
        lambda a: SourceAddressChanged(address=a), st.sampled_from([ME, None, "192.168.0.60"])
    ),
    st.builds(lambda p: PriorityChanged(priority=p), st.integers(1, 255)),
    st.builds(
        lambda s: SyncGroupRequested(group="G", state=s, reason="r"),
        st.sampled_from(["MASTER", "BACKUP", "FAULT", "FAULT_CLEARED"]),
    ),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(any_event, st.floats(0, 3)), max_size=40))
def test_vips_are_held_exactly_while_master_whatever_the_events(steps):
    instance = VrrpInstance(make(track_interfaces={"eth1": 0}, track_scripts={"chk": -10}))
    now = 0.0
    held_box = [False]
    for event, wait in steps:
        # Behave like the driver: every timer due before the next event fires first.
        target = now + wait
        while (deadline := instance.next_deadline()) is not None and deadline <= target:
            now = deadline
            _apply(instance, TimerFired(), now, held_box)
        now = target
        _apply(instance, event, now, held_box)
        deadline = instance.next_deadline()
        assert deadline is None or deadline >= now
        assert (deadline is None) == (instance.state not in (State.BACKUP, State.MASTER))


def _apply(instance: VrrpInstance, event: typing.Any, now: float, held: list[bool]) -> None:
    try:
        out = instance.handle(event, now)
    except ProtocolError:
        assert (instance.state, type(event)) not in transitions()
        return
    for effect in out:
        if isinstance(effect, AddVips):
            assert not held[0]
            held[0] = True
        elif isinstance(effect, DelVips):
            assert held[0]
            held[0] = False
    assert held[0] == (instance.state is State.MASTER)


# ---- whole-LAN property -------------------------------------------------------------------

ADDRESSES = ["192.168.0.11", "192.168.0.12", "192.168.0.13", "192.168.0.14"]


@st.composite
def lan_scenarios(draw: st.DrawFn):
    count = draw(st.integers(2, 4))
    priorities = draw(st.lists(st.integers(1, 255), min_size=count, max_size=count))
    version = draw(st.sampled_from([2, 3]))
    unicast = draw(st.booleans())
    router = st.integers(0, count - 1)
    action = st.one_of(
        st.tuples(st.just("kill"), router),
        st.tuples(st.just("stop"), router),
        st.tuples(st.just("restart"), router),
        st.tuples(st.just("priority"), router, st.integers(1, 255)),
        st.tuples(st.just("partition"), st.lists(router, min_size=1, max_size=count, unique=True)),
        st.tuples(st.just("heal")),
    )
    actions = draw(st.lists(st.tuples(action, st.floats(0, 6)), max_size=15))
    return priorities, version, unicast, actions


@settings(max_examples=150, deadline=None)
@given(lan_scenarios())
def test_quiet_lan_converges_to_exactly_one_master_the_highest_priority(scenario):
    priorities, version, unicast, actions = scenario
    lan = FakeLan()
    names = [f"r{i}" for i in range(len(priorities))]
    for i, (name, prio) in enumerate(zip(names, priorities, strict=True)):
        peers = tuple(a for a in ADDRESSES[: len(names)] if a != ADDRESSES[i]) if unicast else ()
        settings_ = make(priority=prio, version=version, unicast_peers=peers)
        lan.add_router(name, settings_, address=ADDRESSES[i])
    for action, wait in actions:
        verb, *args = action
        if verb == "kill" and lan.routers[names[args[0]]].alive:
            lan.kill(names[args[0]])
        elif verb == "stop" and lan.routers[names[args[0]]].alive:
            lan.stop(names[args[0]])
        elif verb == "restart":
            lan.restart(names[args[0]])
        elif verb == "priority":
            lan.set_priority(names[args[0]], args[1])
        elif verb == "partition":
            lan.partition([names[i] for i in args[0]])
        elif verb == "heal":
            lan.heal()
        lan.run_for(wait)
    lan.heal()
    interval = 1.0
    # Quiet for Master_Down_Interval (at most 4 intervals) plus one interval of margin.
    lan.run_for(4 * interval + interval)

    live = lan.live()
    if not live:
        assert lan.masters() == []
        return
    top = max(r.priority for r in live)
    best = {r.name for r in live if r.priority == top}
    masters = lan.masters()
    assert len(masters) == 1, lan.states()
    assert masters[0] in best, (masters, {r.name: r.priority for r in live})
    assert lan.vip_holders(VIP.address) == masters


def test_configured_multicast_group_replaces_the_rfc_group():
    _, out, _ = become_master(make(mcast_group="224.0.0.88"))
    assert [a.destination for a in of(SendAdvert, out)] == ["224.0.0.88"]


def test_v2_fractional_interval_is_rounded_to_whole_seconds():
    settings_ = make(advert_int=1.6)
    assert (settings_.wire_interval, settings_.advert_interval) == (2, 2.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"vrid": 0},
        {"priority": 0},
        {"version": 4},
        {"version": 2, "family": 6},
        {"version": 3, "advert_int": 41},
        {"version": 3, "auth_pass": "x"},
        {"virtual_addresses": (VIP6,)},
        {"unicast_peers": ("fe80::1",)},
        {"initial_state": State.FAULT},
        {"preempt_delay": -1},
    ],
)
def test_inconsistent_settings_are_refused(overrides):
    with pytest.raises(ValueError):
        make(**overrides)


# -- a Master repeating itself: the Backup's shortcut must match the full receive path ----------


def _backup_fed(adverts: list[tuple[PacketReceived | TrackChanged, float]]) -> VrrpInstance:
    instance, _ = start(make(track_interfaces=(("eth1", -60),)))
    for event, now in adverts:
        instance.handle(event, now)
    return instance


def test_repeated_adverts_count_and_restart_the_master_down_timer_like_the_first():
    advert = packet(priority=150, addresses=("172.16.9.99",))  # address list differs: counted
    instance = _backup_fed([(advert, 1.0), (advert, 2.0), (advert, 3.0)])
    assert instance.state is State.BACKUP
    assert instance.stats.adverts_received == 3
    assert instance.stats.address_list_mismatch == 3
    assert instance.next_deadline() == pytest.approx(3.0 + master_down_interval(
        version=2, priority=100, master_adver_interval=1.0
    ))  # fmt: skip


def test_a_repeated_advert_is_judged_afresh_after_any_other_event():
    # Priority 90 against our 100 would be discarded (we preempt)... until a tracked interface
    # goes down and takes 60 off our priority: then the same bytes are our Master's adverts.
    advert = packet(priority=90)
    instance = _backup_fed([(advert, 1.0), (advert, 1.5)])
    assert instance.stats.lower_priority_discarded == 2
    instance.handle(TrackChanged(name="eth1", up=False, kind="interface"), 1.6)
    instance.handle(advert, 2.0)
    instance.handle(advert, 2.5)
    assert instance.stats.lower_priority_discarded == 2
    deadline = instance.next_deadline()
    assert deadline is not None and deadline > 2.5
    # Back up: the same advert is a lower-priority one again and is discarded, timer untouched.
    instance.handle(TrackChanged(name="eth1", up=True, kind="interface"), 2.6)
    instance.handle(advert, 3.0)
    assert instance.stats.lower_priority_discarded == 3
    assert instance.next_deadline() == deadline


def test_a_different_advert_from_the_master_is_decoded_again():
    instance = _backup_fed([(packet(priority=150), 1.0), (packet(priority=0), 1.2)])
    assert instance.stats.priority_zero_received == 1
    skew = skew_time(version=2, priority=100, master_adver_interval=1.0)
    assert instance.next_deadline() == pytest.approx(1.2 + skew)
    bad = dataclasses.replace(packet(priority=150), ttl=254)
    instance = _backup_fed([(packet(priority=150), 1.0), (bad, 1.1)])
    assert instance.stats.adverts_received == 1
