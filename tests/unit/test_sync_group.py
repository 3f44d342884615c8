"""vrrp_sync_group: member instances fail over together."""

from __future__ import annotations

import pytest

from vipkeeper.core.effects import DelVips, RunNotify
from vipkeeper.core.events import (
    PacketReceived,
    ShutdownRequested,
    SourceAddressChanged,
    Started,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.sync_group import SyncGroup
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp import InstanceSettings, State, VrrpInstance
from vipkeeper.core.vrrp_numbers import MULTICAST_V4
from vipkeeper.core.vrrp_wire import Advertisement, encode

ME = "192.168.0.53"
PEER = "192.168.0.57"


def member(name: str, vrid: int, priority: int = 100, **extra) -> VrrpInstance:
    vip = VirtualAddress(address=f"172.16.9.{vrid}", prefixlen=32, dev="eth0")
    return VrrpInstance(
        InstanceSettings(
            name=name,
            interface="eth0",
            vrid=vrid,
            priority=priority,
            virtual_addresses=(vip,),
            unicast_src_ip=ME,
            **extra,
        )
    )


def advert(vrid: int, priority: int) -> PacketReceived:
    payload = encode(
        Advertisement(
            version=2,
            vrid=vrid,
            priority=priority,
            addresses=(f"172.16.9.{vrid}",),
            wire_interval=1,
        )
    )
    return PacketReceived(source=PEER, destination=MULTICAST_V4, ttl=255, payload=payload)


def started_group(**extra) -> tuple[SyncGroup, float]:
    group = SyncGroup(
        "G1",
        [member("VI_1", 1, **extra), member("VI_2", 2, **extra), member("VI_3", 3, **extra)],
    )
    group.handle(Started(), 0.0)
    return group, 0.0


def states(group: SyncGroup) -> dict[str, State]:
    return {name: i.state for name, i in group.instances.items()}


def run_timers(group: SyncGroup, until: float) -> None:
    while (deadline := group.next_deadline()) is not None and deadline <= until:
        group.handle(TimerFired(), deadline)


def test_members_start_as_backup_and_become_master_together():
    group, _ = started_group()
    assert set(states(group).values()) == {State.BACKUP}
    # VI_2 keeps hearing a master; VI_1 and VI_3 time out: the whole group goes master.
    group.handle(advert(2, 200), 3.0, instance="VI_2")
    out: list = []
    while (deadline := group.next_deadline()) is not None and deadline <= 4.0:
        out += group.handle(TimerFired(), deadline)
    assert set(states(group).values()) == {State.MASTER}
    assert RunNotify(instance="G1", state="MASTER", priority=0, kind="GROUP") in out


def test_one_member_stepping_down_takes_the_others_to_backup():
    group, _ = started_group()
    run_timers(group, 5.0)
    assert set(states(group).values()) == {State.MASTER}
    out = group.handle(advert(1, 250), 5.5, instance="VI_1")
    assert set(states(group).values()) == {State.BACKUP}
    removed = {a.address for d in out if isinstance(d, DelVips) for a in d.addresses}
    assert removed == {"172.16.9.1", "172.16.9.2", "172.16.9.3"}
    assert [e for e in out if isinstance(e, RunNotify) and e.kind == "GROUP"] == [
        RunNotify(instance="G1", state="BACKUP", priority=0, kind="GROUP")
    ]


def test_a_fault_in_one_member_holds_all_in_fault_until_it_recovers():
    group = SyncGroup(
        "G1",
        [
            member("VI_1", 1, track_interfaces={"eth1": 0}),
            member("VI_2", 2),
        ],
    )
    group.handle(Started(), 0.0)
    run_timers(group, 5.0)
    group.handle(TrackChanged(name="eth1", up=False), 5.0)
    assert states(group) == {"VI_1": State.FAULT, "VI_2": State.FAULT}
    assert group.next_deadline() is None
    assert "sync group G1: VI_1 entered FAULT" in group.instances["VI_2"].fault_reasons()
    group.handle(TrackChanged(name="eth1", up=True), 6.0)
    assert states(group) == {"VI_1": State.BACKUP, "VI_2": State.BACKUP}


def test_group_fault_lasts_while_any_member_has_its_own_fault():
    group = SyncGroup(
        "G1",
        [member("VI_1", 1, track_scripts={"a": 0}), member("VI_2", 2, track_scripts={"b": 0})],
    )
    group.handle(Started(), 0.0)
    group.handle(TrackChanged(name="a", up=False), 1.0)
    group.handle(TrackChanged(name="b", up=False), 2.0)
    group.handle(TrackChanged(name="a", up=True), 3.0)
    assert states(group) == {"VI_1": State.FAULT, "VI_2": State.FAULT}
    group.handle(TrackChanged(name="b", up=True), 4.0)
    assert states(group) == {"VI_1": State.BACKUP, "VI_2": State.BACKUP}


def test_member_with_own_fault_at_startup_holds_the_group():
    vi_1 = member("VI_1", 1)
    vi_1.handle(SourceAddressChanged(address=None), 0.0)  # unicast_src_ip wins: still has one
    vi_2 = VrrpInstance(
        InstanceSettings(name="VI_2", interface="eth1", vrid=2, virtual_addresses=())
    )
    group = SyncGroup("G1", [vi_1, vi_2])
    group.handle(Started(), 0.0)
    assert states(group) == {"VI_1": State.FAULT, "VI_2": State.FAULT}
    group.handle(SourceAddressChanged(address="10.0.0.1"), 1.0, instance="VI_2")
    assert states(group) == {"VI_1": State.BACKUP, "VI_2": State.BACKUP}


def test_shutdown_reaches_every_member():
    group, _ = started_group()
    run_timers(group, 5.0)
    out = group.handle(ShutdownRequested(), 6.0)
    assert set(states(group).values()) == {State.INITIALIZE}
    assert sorted(e.instance for e in out if isinstance(e, RunNotify) and e.state == "STOP") == [
        "VI_1",
        "VI_2",
        "VI_3",
    ]


def test_group_membership_is_checked():
    with pytest.raises(ValueError):
        SyncGroup("G", [])
    with pytest.raises(ValueError):
        SyncGroup("G", [member("VI_1", 1), member("VI_1", 2)])
    group, _ = started_group()
    with pytest.raises(KeyError):
        group.handle(TimerFired(), 1.0, instance="nope")
