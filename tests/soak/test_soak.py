"""A short chaos soak of vipkeeper: random faults for SOAK_SECONDS (120), every invariant held.

The seed is SOAK_SEED when set, else drawn at random and printed; a failure shows the seed and
the faults played, and `make soak SEED=<seed>` replays the same sequence for longer.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from vipkeeper.testing.chaos import run_soak

pytestmark = pytest.mark.netns


def test_vipkeeper_keeps_every_invariant_under_random_faults(tmp_path: Path) -> None:
    seed = int(os.environ.get("SOAK_SEED") or secrets.randbelow(2**31))
    seconds = float(os.environ.get("SOAK_SECONDS", "120"))
    # The logs and the client's records stay in tmp_path (pytest keeps the last runs').
    soak = run_soak("vipkeeper", seed=seed, duration=seconds, workdir=tmp_path / "soak")
    print(soak.summary_line())
    assert soak.rounds, "the soak played no round"
    assert not soak.violations, soak.replay_text()


def test_the_checker_reports_a_backup_holding_the_vip_and_a_client_outage(tmp_path: Path) -> None:
    """The watcher must be able to fail: a VIP planted on a Backup is two violations (a
    non-Master holding it, a second holder in a steady phase), and a client outage outside
    any fault window is one more."""
    from vipkeeper.testing.chaos import Soak
    from vipkeeper.testing.netns import Lab

    with Lab(workdir=tmp_path / "lab") as lab:
        soak = Soak(lab, daemon="vipkeeper", seed=1, duration=0, out=lambda _text: None)
        try:
            soak.build()
            r1, r2 = soak.routers["r1"], soak.routers["r2"]
            lab.run(r2.host, "ip", "addr", "add", soak.net.vip4_cidr, "dev", "eth0")
            soak.watch(2.0, expected="r1")
            lab.run(r2.host, "ip", "addr", "del", soak.net.vip4_cidr, "dev", "eth0")
            lab.cut(r1.host)  # the client loses the Master without any fault being played
            soak.watch(1.5)
            lab.restore(r1.host)
            soak.watch(1.0)
            soak.finish()
        finally:
            soak.close()
    found = [v.what for v in soak.violations]
    assert any("r2 holds the VIP in state BACKUP" in what for what in found), found
    assert any("steady phase: VIP held by ['r1', 'r2']" in what for what in found), found
    assert any("outage" in what and "outside any fault window" in what for what in found), found
