"""Test helpers that ship with vipkeeper: the one test infrastructure of its suites and benches.

Exported here, and never touching the network or sleeping: `FakeClock` moves time by hand,
`FakeLan` wires several VRRP cores together in memory and `EffectRecorder` keeps every effect
they return. The submodules add builders and fakes (`builders`, `adapters`, `samples`), the
waits (`waits`), and, needing root and iproute2, the namespace labs and what runs in them
(`netns`, `daemons`, `lbnet`, `chaos`, `nsaddr`, `adverts`, `vmacnet`). Nothing in the daemon
imports them.
"""

from vipkeeper.testing.clock import FakeClock
from vipkeeper.testing.lan import FakeLan, Router
from vipkeeper.testing.recorder import EffectRecorder, Recorded

__all__ = ["EffectRecorder", "FakeClock", "FakeLan", "Recorded", "Router"]
