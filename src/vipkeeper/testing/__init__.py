"""Test helpers that ship with vipkeeper, so users can exercise their own configurations.

`FakeClock` moves time by hand, `FakeLan` wires several VRRP cores together in memory and
`EffectRecorder` keeps every effect they return. Nothing here touches the network or sleeps.
"""

from vipkeeper.testing.clock import FakeClock
from vipkeeper.testing.lan import FakeLan, Router
from vipkeeper.testing.recorder import EffectRecorder, Recorded

__all__ = ["EffectRecorder", "FakeClock", "FakeLan", "Recorded", "Router"]
