"""Chaos soak: routers on one bridge under a seeded random sequence of faults, with invariants.

The soak test (tests/soak) and the soak bench (bench/soak.py, `make soak`) both run `Soak`; it
drives vipkeeper or keepalived with the same keepalived.conf text, so both daemons meet the same
sequence on the same LAN. Where each part lives:
  * lan: the routers, the client and the programs they run (`Router`, one daemon run each);
  * faults: the fault catalogue, the seeded fault sequence, and injecting and healing a fault;
  * soak: `Soak` and `run_soak`: the rounds, the invariant watcher, the checks and the summary.
"""

from __future__ import annotations

from vipkeeper.testing.chaos.faults import (
    DISTURBING,
    FAULTS,
    REORDER_DELAY_MS,
    REORDER_PERCENT,
    Fault,
    fault_sequence,
    has_netem,
)
from vipkeeper.testing.chaos.lan import ADVERT_INT, OBSERVER, ROUTERS, Router
from vipkeeper.testing.chaos.soak import Soak, run_soak

__all__ = [
    "ADVERT_INT",
    "DISTURBING",
    "FAULTS",
    "OBSERVER",
    "REORDER_DELAY_MS",
    "REORDER_PERCENT",
    "ROUTERS",
    "Fault",
    "Router",
    "Soak",
    "fault_sequence",
    "has_netem",
    "run_soak",
]
