"""VRRP timer arithmetic: Skew_Time and Master_Down_Interval for both protocol versions.

Owns: the formulas of RFC 3768 §6.1 (v2, whole-second intervals) and RFC 9568 §6.1 (v3,
centisecond intervals), and the conversions between seconds and the v3 wire unit.
Must never: read a clock or keep state; every function is pure and works in seconds (float),
which is what the state machine's `now` is measured in.
"""

from __future__ import annotations

V2_MAX_SECONDS = 255  # 8-bit field of whole seconds, RFC 3768 §5.3.7
V3_MAX_CENTISECONDS = 0x0FFF  # 12-bit field of centiseconds, RFC 9568 §5.2.7


def advert_int_error(*, version: int, seconds: float, exact: bool = True) -> str | None:
    """Why `seconds` cannot be a version-`version` advertisement interval, or None if it can.

    The one statement of the limits, used by the configuration checks and the core alike.
    `exact` also asks that the value be a whole number of the wire's unit (as keepalived.conf
    must be); without it a value within range is rounded on the wire (`wire_interval`).
    """
    if version == 2:
        whole = seconds == int(seconds)
        if not 0 < seconds < V2_MAX_SECONDS + 1 or (exact and (not whole or seconds < 1)):
            return (
                f"{seconds:g} is not valid for VRRPv2, which carries whole seconds"
                f" (RFC 3768 §5.3.7); valid: 1..{V2_MAX_SECONDS}, or use version 3 for"
                " sub-second intervals"
            )
        return None
    centiseconds = seconds * 100
    whole = abs(centiseconds - round(centiseconds)) <= 1e-6
    if not 1 <= round(centiseconds) <= V3_MAX_CENTISECONDS or (exact and not whole):
        return (
            f"{seconds:g} is not valid for VRRPv3, which carries centiseconds in 12 bits"
            f" (RFC 9568 §5.2.7); valid: 0.01..{V3_MAX_CENTISECONDS / 100:.2f} in steps of 0.01"
        )
    return None


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
