"""Skew_Time and Master_Down_Interval follow RFC 3768 §6.1 (v2) and RFC 9568 §6.1 (v3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipkeeper.core.timing import (
    advert_int_error,
    centiseconds_to_seconds,
    master_down_interval,
    seconds_to_centiseconds,
    skew_time,
)


def test_v2_skew_is_a_fraction_of_one_second_independent_of_interval():
    assert skew_time(version=2, priority=100, master_adver_interval=1) == 156 / 256
    assert skew_time(version=2, priority=100, master_adver_interval=5) == 156 / 256


def test_v2_master_down_interval_is_three_intervals_plus_skew():
    assert master_down_interval(version=2, priority=100, master_adver_interval=1) == 3 + 156 / 256
    assert master_down_interval(version=2, priority=254, master_adver_interval=2) == 6 + 2 / 256


def test_v3_skew_scales_with_master_advertisement_interval():
    assert skew_time(version=3, priority=100, master_adver_interval=1.0) == 156 / 256
    assert skew_time(version=3, priority=100, master_adver_interval=0.5) == 78 / 256
    assert master_down_interval(version=3, priority=200, master_adver_interval=0.5) == (
        1.5 + 56 * 0.5 / 256
    )


@given(
    st.sampled_from([2, 3]),
    st.integers(1, 254),
    st.integers(1, 254),
    st.integers(1, 4095).map(centiseconds_to_seconds),
)
def test_higher_priority_never_waits_longer(version, a, b, interval):
    low, high = sorted((a, b))
    kwargs = {"version": version, "master_adver_interval": interval}
    assert master_down_interval(priority=high, **kwargs) <= master_down_interval(
        priority=low, **kwargs
    )
    assert 3 * interval <= master_down_interval(priority=high, **kwargs)


@pytest.mark.parametrize(("seconds", "wire"), [(1.0, 100), (0.5, 50), (0.001, 1), (100.0, 4095)])
def test_seconds_convert_to_twelve_bit_centiseconds(seconds, wire):
    assert seconds_to_centiseconds(seconds) == wire


@pytest.mark.parametrize(("version", "priority"), [(1, 100), (3, 256), (2, -1)])
def test_invalid_version_or_priority_is_refused(version, priority):
    with pytest.raises(ValueError):
        skew_time(version=version, priority=priority, master_adver_interval=1)


@pytest.mark.parametrize(
    ("version", "seconds", "exact", "valid"),
    [
        (2, 1, True, True),
        (2, 255, True, True),
        (2, 256, True, False),
        (2, 1.5, True, False),  # keepalived.conf must give whole seconds
        (2, 1.5, False, True),  # the core rounds it on the wire
        (2, 0, False, False),
        (3, 0.01, True, True),
        (3, 40.95, True, True),
        (3, 40.96, True, False),
        (3, 0.015, True, False),
        (3, 0.004, False, False),  # rounds to 0 centiseconds
    ],
)
def test_advert_int_limits_are_one_rule_for_config_and_core(
    version: int, seconds: float, exact: bool, valid: bool
) -> None:
    problem = advert_int_error(version=version, seconds=seconds, exact=exact)
    assert (problem is None) == valid, problem
