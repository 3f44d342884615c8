"""Lab test 2 of issue 4: `docker kill` of the MASTER moves the VIP to the backup within its
Master_Down_Interval plus a margin, clients recover, and the restarted director takes the VIP
back (preemption) with one master after.  Writes a timeline (JSON + PNG) to artifacts/lab/."""

from __future__ import annotations

import time

from harness import Faults, HttpProber, Lab, Timeline, VipWatcher, masters, wait_until
from harness.topology import ADVERT_INT, DIRECTORS, PREFERRED_MASTER, PRIORITY, master_down_interval

FAILOVER_MARGIN = 2.0  # s: daemon reaction + docker exec polling of `ip addr`
PROBE_TIMEOUT = 1.0  # s: the HTTP prober's per-request timeout


def test_vip_moves_to_the_backup_within_master_down_interval_after_kill(
    healthy_lab: Lab, timeline: Timeline
) -> None:
    (old,) = masters(healthy_lab)
    (new,) = set(DIRECTORS) - {old}
    bound = master_down_interval(PRIORITY[new], ADVERT_INT) + FAILOVER_MARGIN
    prober = HttpProber(healthy_lab, interval=0.1, timeout=PROBE_TIMEOUT)
    with VipWatcher(healthy_lab, timeline.vip_changed) as watcher, prober:
        wait_until(lambda: watcher.history, timeout=10, what="the VIP watcher's first answer")
        killed_at = Faults(healthy_lab, timeline).kill(old)
        moved_at = wait_until(
            lambda: next((t for t, h in watcher.history if t > killed_at and h == {new}), 0.0),
            timeout=bound + 5,
            interval=0.05,
            what=f"{new} alone to hold the VIP",
        )
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
    faults = Faults(healthy_lab, timeline)
    (backup,) = set(DIRECTORS) - {PREFERRED_MASTER}
    faults.kill(PREFERRED_MASTER)
    with VipWatcher(healthy_lab, timeline.vip_changed) as watcher:
        wait_until(
            lambda: masters(healthy_lab) == {backup}, timeout=15, what=f"{backup} to take the VIP"
        )
        restarted_at = faults.start(PREFERRED_MASTER)
        settled_at = wait_until(
            lambda: watcher.history[-1][1] == {PREFERRED_MASTER} and watcher.history[-1][0],
            timeout=30,
            what=f"{PREFERRED_MASTER} (priority {PRIORITY[PREFERRED_MASTER]}) to preempt",
        )
        # One master at all times after the takeover: watch for 3 advert intervals.
        wait_until(
            lambda: time.time() > settled_at + 3 * ADVERT_INT,
            timeout=10,
            what="three advert intervals to pass",
        )
    after = [holders for t, holders in watcher.history if t >= settled_at]
    assert after == [frozenset({PREFERRED_MASTER})], after
    assert restarted_at < settled_at
