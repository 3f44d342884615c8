"""vrrp_script rise/fall counting and keepalived's weight semantics for tracked objects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipkeeper.core.track import ScriptTracker, TrackKind, TrackSet, priority_delta


def test_script_goes_down_only_after_fall_consecutive_failures():
    tracker = ScriptTracker(rise=2, fall=3)
    assert [tracker.record(False), tracker.record(False)] == [None, None]
    assert tracker.up
    assert tracker.record(False) is False
    assert not tracker.up


def test_a_success_between_failures_restarts_the_fall_count():
    tracker = ScriptTracker(fall=2)
    tracker.record(False)
    tracker.record(True)
    assert tracker.record(False) is None
    assert tracker.record(False) is False


def test_script_comes_up_after_rise_consecutive_successes():
    tracker = ScriptTracker(rise=2, fall=1, initially_up=False)
    assert tracker.record(True) is None
    assert tracker.record(True) is True
    assert tracker.up


def test_rise_and_fall_must_be_positive():
    with pytest.raises(ValueError):
        ScriptTracker(rise=0)


@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.booleans(), max_size=60))
def test_reported_changes_alternate_and_match_the_final_state(rise, fall, results):
    tracker = ScriptTracker(rise=rise, fall=fall)
    changes = [c for c in (tracker.record(r) for r in results) if c is not None]
    expected = [False, True] * len(changes)
    assert changes == expected[: len(changes)]
    if changes:
        assert tracker.up == changes[-1]


@pytest.mark.parametrize(
    ("weight", "up", "delta"),
    [(10, True, 10), (10, False, 0), (-10, True, 0), (-10, False, -10), (0, False, 0)],
)
def test_positive_weight_adds_when_up_and_negative_weight_subtracts_when_down(weight, up, delta):
    assert priority_delta(weight, up) == delta


def test_unweighted_object_down_is_a_fault_and_weighted_one_moves_priority():
    tracks = TrackSet(interfaces={"eth0": 0, "eth1": -20}, scripts={"chk": 5})
    assert tracks.faults() == [] and tracks.delta() == 5
    tracks.update("eth1", False)
    assert tracks.delta() == -15
    tracks.update("eth0", False)
    assert tracks.faults() == ["interface eth0 down"]
    tracks.update("eth0", True)
    assert tracks.faults() == []


def test_kind_limits_a_change_to_one_table_when_names_collide():
    tracks = TrackSet(interfaces={"x": 0}, scripts={"x": 0})
    assert tracks.update("x", False, TrackKind.SCRIPT)
    assert tracks.faults() == ["script x down"]
    assert not tracks.update("unknown", False)
