"""FakeLan wires real cores together: failover, graceful stop, partitions, unicast."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vipkeeper.core.effects import ReportTransition, SendAdvert
from vipkeeper.core.timing import master_down_interval, skew_time
from vipkeeper.core.vrrp import InstanceSettings, State
from vipkeeper.testing import EffectRecorder, FakeClock, FakeLan
from vipkeeper.testing.builders import instance_settings


def settings(priority: int, **extra) -> InstanceSettings:
    return instance_settings(priority=priority, **extra)


def became_master(lan: FakeLan, name: str) -> list[float]:
    """When `name` entered MASTER, each time."""
    return [t for t, e in lan.recorder.timed(ReportTransition, name) if e.new == "MASTER"]


def two_directors(**extra) -> FakeLan:
    lan = FakeLan()
    lan.add_router("dir1", settings(150, **extra), address="192.168.0.53")
    lan.add_router("dir2", settings(100, **extra), address="192.168.0.57")
    return lan


def dir2_takes_over(fault: Callable[[FakeLan, str], object], *, then: float) -> tuple[float, float]:
    """Two directors settle for 5 s, `fault` befalls dir1, `then` seconds pass: dir2 must be
    the only Master. When the fault happened, and when dir2 became Master (once)."""
    lan = two_directors()
    lan.run_for(5)
    at = lan.clock.now
    fault(lan, "dir1")
    lan.run_for(then)
    assert lan.masters() == ["dir2"]
    [when] = became_master(lan, "dir2")
    return at, when


def test_highest_priority_director_becomes_master_and_holds_the_vip():
    lan = two_directors()
    lan.run_for(5)
    assert lan.masters() == ["dir1"]
    assert lan.vip_holders("172.16.9.1") == ["dir1"]
    assert lan.states()["dir2"] is State.BACKUP


def test_backup_takes_over_one_master_down_interval_after_the_master_dies():
    died, when = dir2_takes_over(FakeLan.kill, then=10)
    # dir2's timer was last reset by dir1's last advert, at most one interval before the death.
    mdi = master_down_interval(version=2, priority=100, master_adver_interval=1)
    assert died - 1 + mdi <= when <= died + mdi


def test_graceful_stop_hands_over_after_skew_time_only():
    stopped, when = dir2_takes_over(FakeLan.stop, then=1)
    assert when == stopped + skew_time(version=2, priority=100, master_adver_interval=1)


def test_restarted_higher_priority_router_preempts():
    lan = two_directors()
    lan.run_for(5)
    lan.kill("dir1")
    lan.run_for(5)
    lan.restart("dir1")
    lan.run_for(5)
    assert lan.masters() == ["dir1"]
    assert lan.vip_holders("172.16.9.1") == ["dir1"]


def test_nopreempt_keeps_the_current_master_after_restart():
    lan = two_directors(nopreempt=True)
    lan.run_for(5)
    lan.kill("dir1")
    lan.run_for(5)
    lan.restart("dir1")
    lan.run_for(10)
    assert lan.masters() == ["dir2"]


def test_priority_change_moves_mastership():
    lan = two_directors()
    lan.run_for(5)
    lan.set_priority("dir2", 200)
    lan.run_for(5)
    assert lan.masters() == ["dir2"]


def test_partition_makes_two_masters_and_healing_leaves_one():
    lan = two_directors()
    lan.run_for(5)
    lan.partition(["dir1"], ["dir2"])
    lan.run_for(5)
    assert sorted(lan.masters()) == ["dir1", "dir2"]
    lan.heal()
    lan.run_for(2)
    assert lan.masters() == ["dir1"]
    assert lan.vip_holders("172.16.9.1") == ["dir1"]


def test_unicast_adverts_reach_only_the_addressed_peer():
    lan = FakeLan()
    lan.add_router("a", settings(150, unicast_peers=("10.0.0.2",)), address="10.0.0.1")
    lan.add_router("b", settings(100, unicast_peers=("10.0.0.1",)), address="10.0.0.2")
    lan.add_router("c", settings(50, unicast_peers=("10.0.0.1",)), address="10.0.0.3")
    lan.run_for(10)
    # c is not a's peer: it never hears a and claims mastership on its own.
    assert sorted(lan.masters()) == ["a", "c"]
    assert {a.destination for a in lan.recorder.of_type(SendAdvert, "a")} == {"10.0.0.2"}
    assert lan.routers["a"].instance.stats.dropped.get("unicast_peer", 0) > 0


def test_track_fault_moves_the_vip():
    lan = two_directors(track_interfaces={"eth1": 0})
    lan.run_for(5)
    lan.set_track("dir1", "eth1", up=False)
    assert lan.states()["dir1"] is State.FAULT
    lan.run_for(5)
    assert lan.vip_holders("172.16.9.1") == ["dir2"]


def test_a_running_router_cannot_be_started_twice_and_dead_ones_take_no_events():
    lan = two_directors()
    with pytest.raises(ValueError):
        lan.start("dir1")
    lan.kill("dir2")
    with pytest.raises(ValueError):
        lan.set_track("dir2", "eth1", up=False)


def test_fake_clock_only_moves_forward():
    clock = FakeClock(10.0)
    assert clock.advance(2.5) == 12.5 == clock.time()
    with pytest.raises(ValueError):
        clock.advance_to(1.0)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_recorder_filters_by_type_source_and_time():
    recorder = EffectRecorder()
    t = ReportTransition(instance="VI_1", old="BACKUP", new="MASTER", reason="x")
    recorder.record(1.0, "a", [t])
    recorder.record(2.0, "b", [t])
    assert recorder.of_type(ReportTransition, "a") == [t]
    assert recorder.of_type(ReportTransition, since=1.5) == [t]
    assert recorder.transitions() == [t, t]
    recorder.clear()
    assert recorder.records == []
