"""VRRP timer arithmetic: Skew_Time and Master_Down_Interval for both protocol versions.

Owns: the formulas of RFC 3768 §6.1 (v2, whole-second intervals) and RFC 9568 §6.1 (v3,
centisecond intervals), and the conversions between seconds and the v3 wire unit.
Must never: read a clock or keep state; every function is pure and works in seconds (float),
which is what the state machine's `now` is measured in.
"""

from __future__ import annotations

V3_MAX_CENTISECONDS = 0x0FFF  # 12-bit field, RFC 9568 §5.2.7


def skew_time(*, version: int, priority: int, master_adver_interval: float) -> float:
    """Seconds a Backup adds to its Master_Down_Interval, so higher priorities win the race.

    RFC 3768 §6.1: Skew_Time = (256 - Priority) / 256 seconds, independent of the interval.
    RFC 9568 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
    """
    _check(version, priority)
    if version == 2:
        return (256 - priority) / 256.0
    return ((256 - priority) * master_adver_interval) / 256.0


def master_down_interval(*, version: int, priority: int, master_adver_interval: float) -> float:
    """Seconds without an advertisement before a Backup declares the Master down.

    RFC 3768 §6.1 and RFC 9568 §6.1: 3 * (Master_)Adver_Interval + Skew_Time.
    """
    skew = skew_time(
        version=version, priority=priority, master_adver_interval=master_adver_interval
    )
    return 3.0 * master_adver_interval + skew


def seconds_to_centiseconds(seconds: float) -> int:
    """The v3 wire value for an interval (RFC 9568 §5.2.7), rounded and kept within 1..4095."""
    return max(1, min(V3_MAX_CENTISECONDS, round(seconds * 100)))


def centiseconds_to_seconds(centiseconds: int) -> float:
    return centiseconds / 100.0


def _check(version: int, priority: int) -> None:
    if version not in (2, 3):
        raise ValueError(f"VRRP version {version} is not 2 or 3")
    if not 0 <= priority <= 255:
        raise ValueError(f"priority {priority} is not 0..255")
