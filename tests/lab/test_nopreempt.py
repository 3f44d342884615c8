"""Failover with `nopreempt`: with both directors configured `state BACKUP` +
`nopreempt`, the higher-priority director that was killed and restarted does NOT take the VIP
back from the working lower-priority MASTER; there is one master at all times after.

The variant is lab/dirN/keepalived.nopreempt.conf, mounted through LAB_DIRN_CONF (compose.yaml).
The fixture recreates the directors with it (dir1 first, so that dir1 - priority 150 - is the
MASTER the test kills: with preemption it would take the VIP back) and recreates them with the
default configuration afterwards, even when the test fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from harness import Lab, Timeline, VipWatcher, lab_topology, masters, wait_until
from harness.faults import Kill
from harness.restore import UP_TIMEOUT, restore
from harness.topology import REACTION_MARGIN

TOPO = lab_topology()
NOPREEMPT_ENV = {
    d.config_env: d.variant_config("nopreempt") for d in TOPO.directors if d.config_env
}
PREFERRED = TOPO.preferred_master
PREFERRED_MASTER = PREFERRED.name
OTHERS = TOPO.others(PREFERRED_MASTER)
(OTHER,) = OTHERS


@pytest.fixture
def nopreempt_lab(lab: Lab) -> Iterator[Lab]:
    restore(lab)
    try:
        # dir2 out of the way, so that dir1 (higher priority) becomes MASTER alone; then dir2
        # joins as BACKUP.  Both containers are recreated with the variant mounted.
        for other in OTHERS:
            lab.stop(other)
        lab.compose_up((PREFERRED_MASTER,), env=NOPREEMPT_ENV)
        wait_until(
            lambda: masters(lab) == {PREFERRED_MASTER},
            timeout=UP_TIMEOUT,
            interval=0.3,
            what=f"{PREFERRED_MASTER} (nopreempt variant) to hold the VIP alone",
        )
        lab.compose_up(OTHERS, env=NOPREEMPT_ENV)
        wait_until(
            lambda: "BACKUP" in lab.logs(OTHER),
            timeout=UP_TIMEOUT,
            what=f"{OTHER} (nopreempt variant) to run as BACKUP",
        )
        yield lab
    finally:
        lab.compose_up(TOPO.director_names)  # back to the default configuration (recreates both)
        restore(lab)


def test_restarted_director_does_not_take_the_vip_back_with_nopreempt(
    nopreempt_lab: Lab, timeline: Timeline
) -> None:
    lab = nopreempt_lab
    assert masters(lab) == {PREFERRED_MASTER}
    assert PREFERRED.priority > TOPO.director(OTHER).priority  # so preemption would take it back
    kill = Kill(lab, PREFERRED_MASTER, timeline=timeline)
    with VipWatcher(lab, timeline.vip_changed) as watcher:
        killed_at = kill.apply()
        took_over_at = watcher.wait_held(
            {OTHER},
            after=killed_at,
            timeout=TOPO.director(OTHER).master_down_interval + REACTION_MARGIN + 5,
        )
        restarted_at = kill.undo()
        # The restarted daemon is up and has entered BACKUP (both vipkeeper and keepalived log
        # the word).  From there a preempting director would take over when it hears the
        # lower-priority MASTER's next advert (within advert_int) or at the latest after its
        # own Master_Down_Interval; watch that long plus the margin.
        wait_until(
            lambda: "BACKUP" in lab.logs(PREFERRED_MASTER, since=restarted_at),
            timeout=UP_TIMEOUT,
            what=f"restarted {PREFERRED_MASTER} to enter BACKUP",
        )
        backup_at = timeline.mark(f"{PREFERRED_MASTER} in BACKUP", kind="repair").at
        window = PREFERRED.master_down_interval + PREFERRED.advert_int + REACTION_MARGIN
        wait_until(
            lambda: time.time() > backup_at + window or watcher.history[-1][1] != {OTHER},
            timeout=window + 5,
            what="the nopreempt watch window to pass (or the VIP to move)",
        )
    after = [holders for t, holders in watcher.history if t >= took_over_at]
    assert after == [frozenset({OTHER})], f"the VIP moved after the takeover: {after}"
    assert lab.state(PREFERRED_MASTER) == "running"
