"""`docker kill` of the MASTER moves the VIP to the backup within its
Master_Down_Interval plus a margin, clients recover, and the restarted director takes the VIP
back (preemption) with one master after.  Writes a timeline (JSON + PNG) to artifacts/lab/."""

from __future__ import annotations

import time

from harness import HttpProber, Lab, Timeline, VipWatcher, lab_topology, masters, wait_until
from harness.faults import Kill

TOPO = lab_topology()
PREFERRED = TOPO.preferred_master

FAILOVER_MARGIN = 2.0  # s: daemon reaction + docker exec polling of `ip addr`
PROBE_TIMEOUT = 1.0  # s: the HTTP prober's per-request timeout


def test_vip_moves_to_the_backup_within_master_down_interval_after_kill(
    healthy_lab: Lab, timeline: Timeline
) -> None:
    (old,) = masters(healthy_lab)
    (new,) = TOPO.others(old)
    bound = TOPO.director(new).master_down_interval + FAILOVER_MARGIN
    prober = HttpProber(healthy_lab, interval=0.1, timeout=PROBE_TIMEOUT)
    with VipWatcher(healthy_lab, timeline.vip_changed) as watcher, prober:
        wait_until(lambda: watcher.history, timeout=10, what="the VIP watcher's first answer")
        killed_at = Kill(healthy_lab, old, timeline=timeline).apply()
        moved_at = watcher.wait_held({new}, after=killed_at, timeout=bound + 5)
        # Clients recover: wait for a run of successful new connections after the move.
        recovered = moved_at + FAILOVER_MARGIN
        wait_until(
            lambda: (
                len([r for r in prober.records() if r.kind == "new" and r.start > recovered]) >= 10
            ),
            timeout=20,
            what="10 requests after the failover window",
        )
    timeline.requests = prober.requests
    assert moved_at - killed_at <= bound, f"VIP moved after {moved_at - killed_at:.2f} s"
    failed = [r for r in prober.requests if r.kind == "new" and not r.ok]
    # A request can only fail if it was in flight inside the failover window.
    outside = [
        r for r in failed if not killed_at - PROBE_TIMEOUT <= r.start <= moved_at + FAILOVER_MARGIN
    ]
    assert outside == [], f"requests failed outside the failover window: {outside[:5]}"
    after = [r for r in prober.requests if r.kind == "new" and r.start > recovered]
    assert len(after) >= 10 and all(r.ok for r in after), after


def test_restarted_preferred_master_takes_the_vip_back(
    healthy_lab: Lab, timeline: Timeline
) -> None:
    kill = Kill(healthy_lab, PREFERRED.name, timeline=timeline)
    (backup,) = TOPO.others(PREFERRED.name)
    kill.apply()
    with VipWatcher(healthy_lab, timeline.vip_changed) as watcher:
        wait_until(
            lambda: masters(healthy_lab) == {backup}, timeout=15, what=f"{backup} to take the VIP"
        )
        restarted_at = kill.undo()
        settled_at = wait_until(
            lambda: watcher.history[-1][1] == {PREFERRED.name} and watcher.history[-1][0],
            timeout=30,
            what=f"{PREFERRED.name} (priority {PREFERRED.priority}) to preempt",
        )
        # One master at all times after the takeover: watch for 3 advert intervals.
        wait_until(
            lambda: time.time() > settled_at + 3 * PREFERRED.advert_int,
            timeout=10,
            what="three advert intervals to pass",
        )
    after = [holders for t, holders in watcher.history if t >= settled_at]
    assert after == [frozenset({PREFERRED.name})], after
    assert restarted_at < settled_at
