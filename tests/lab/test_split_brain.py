"""Freeze and partition: `docker pause` of the MASTER, or a VRRP-only
partition between the directors (IP protocol 112 dropped in both), makes the BACKUP stop hearing
adverts, so it becomes MASTER too: two masters for a while.  After unpause / heal

- there is exactly one master, the higher-priority dir1, within one Master_Down_Interval of the
  backup (plus the reaction margin), and one master at all times after;
- the client converges on it: only its MAC answers ARP for the VIP, HTTP works, and the
  client's own neighbour entry for the VIP - which followed dir2's gratuitous ARP during the
  split - names dir1's MAC again within the same bound.  In the lab's directors the MAC is the
  interface's own (no virtual MAC: the kernel has no macvlan), so only a gratuitous ARP from the
  surviving master can move clients back (keepalived: garp_lower_prio_repeat when a MASTER hears
  a lower-priority advert; `higher_prio_send_advert` in lab/dir*/keepalived.conf makes the
  MASTER that steps down send that advert, whichever director hears the other first).

Each fault runs once (a module fixture) and both tests read its outcome; the timeline (JSON +
PNG) is written to artifacts/lab/split_brain_<fault>.*.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from harness import (
    HttpProber,
    Lab,
    Timeline,
    VipWatcher,
    WaitTimeout,
    arp_answers,
    client_vip_mac,
    lab_topology,
    servers_answering,
    wait_until,
)
from harness.faults import Fault, Partition, Pause
from harness.restore import restore
from harness.topology import REACTION_MARGIN

TOPO = lab_topology()
DIRECTORS = TOPO.director_names
PREFERRED_MASTER = TOPO.preferred_master.name
(OTHER,) = TOPO.others(PREFERRED_MASTER)
ADVERT_INT = TOPO.preferred_master.advert_int
# The backup stops hearing the MASTER: it takes over after its Master_Down_Interval.
SPLIT_BOUND = TOPO.director(OTHER).master_down_interval + REACTION_MARGIN
# After the repair: one master (and the client on it) within one Master_Down_Interval.
HEAL_BOUND = TOPO.director(OTHER).master_down_interval + REACTION_MARGIN


@dataclass
class Outcome:
    fault: str
    timeline: Timeline
    client_on_master_before: bool = False
    faulted_at: float = 0.0
    two_masters_at: float | None = None
    client_followed_other_at: float | None = None
    repaired_at: float = 0.0
    one_master_at: float | None = None
    client_converged_at: float | None = None
    history_after_one_master: list[frozenset[str]] = field(default_factory=list)
    arp_services: list[str | None] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    failed_requests: int = 0


def _maybe(probe: Callable[[], float], *, timeout: float, what: str) -> float | None:
    try:
        return wait_until(probe, timeout=timeout, interval=0.1, what=what)
    except WaitTimeout:
        return None


def _run(lab: Lab, fault: str) -> Outcome:
    restore(lab)
    outcome = Outcome(fault=fault, timeline=Timeline(name=f"split_brain_{fault}"))
    split: Fault = (
        Pause(lab, PREFERRED_MASTER, timeline=outcome.timeline)
        if fault == "pause"
        else Partition(lab, timeline=outcome.timeline)
    )
    mac = {d: lab.mac(d, TOPO.front_net) for d in DIRECTORS}
    prober = HttpProber(lab, interval=0.2, timeout=1.0, keepalive_streams=2)
    try:
        with VipWatcher(lab, outcome.timeline.vip_changed) as watcher, prober:
            wait_until(lambda: watcher.history, timeout=10, what="the VIP watcher's first answer")
            outcome.client_on_master_before = client_vip_mac(lab) == mac[PREFERRED_MASTER]
            outcome.faulted_at = split.apply()
            outcome.two_masters_at = _maybe(
                lambda: watcher.first_held(set(DIRECTORS), after=outcome.faulted_at),
                timeout=SPLIT_BOUND + 5,
                what="both directors to hold the VIP",
            )
            # dir2's gratuitous ARP moves the client to dir2 while both hold the VIP.
            outcome.client_followed_other_at = _maybe(
                lambda: client_vip_mac(lab) == mac[OTHER] and time.time(),
                timeout=SPLIT_BOUND + 5,
                what=f"the client to send VIP traffic to {OTHER}",
            )
            outcome.repaired_at = split.undo()
            outcome.one_master_at = _maybe(
                lambda: watcher.first_held({PREFERRED_MASTER}, after=outcome.repaired_at),
                timeout=HEAL_BOUND + 5,
                what=f"{PREFERRED_MASTER} alone to hold the VIP",
            )
            outcome.client_converged_at = _maybe(
                lambda: client_vip_mac(lab) == mac[PREFERRED_MASTER] and time.time(),
                timeout=HEAL_BOUND + 5,
                what=f"the client to send VIP traffic to {PREFERRED_MASTER}",
            )
            if outcome.client_converged_at is not None:
                outcome.timeline.mark(
                    f"client -> {PREFERRED_MASTER}", kind="vip", at=outcome.client_converged_at
                )
            # One master at all times after: watch three advert intervals.
            settled = outcome.one_master_at or time.time()
            wait_until(
                lambda: time.time() > settled + 3 * ADVERT_INT,
                timeout=3 * ADVERT_INT + 5,
                what="three advert intervals to pass",
            )
            outcome.history_after_one_master = [h for t, h in watcher.history if t >= settled]
            outcome.arp_services = [a.service for a in arp_answers(lab)]
            outcome.answers = servers_answering(lab, requests=30)
    finally:
        outcome.timeline.requests = prober.requests
        outcome.timeline.write()
        restore(lab)
    outcome.failed_requests = sum(1 for r in prober.requests if not r.ok)
    return outcome


@pytest.fixture(scope="module", params=["pause", "partition"])
def split_brain(request: pytest.FixtureRequest, lab: Lab) -> Outcome:
    return _run(lab, str(request.param))


def test_split_brain_ends_with_one_master_within_master_down_interval(
    split_brain: Outcome,
) -> None:
    o = split_brain
    assert o.two_masters_at is not None, f"{o.fault}: never two masters (was the fault real?)"
    assert o.two_masters_at - o.faulted_at <= SPLIT_BOUND
    assert o.one_master_at is not None, f"{o.fault}: not one master after the repair"
    assert o.one_master_at - o.repaired_at <= HEAL_BOUND, o.one_master_at - o.repaired_at
    assert o.history_after_one_master == [frozenset({PREFERRED_MASTER})], o.history_after_one_master
    assert o.arp_services == [PREFERRED_MASTER], o.arp_services
    assert set(o.answers) == set(TOPO.real_server_names), o.answers
    # Both directors hash a flow alike, so the split itself breaks no request.
    assert o.failed_requests == 0


def test_client_converges_on_the_single_master_after_split_brain(
    split_brain: Outcome,
) -> None:
    o = split_brain
    assert o.client_on_master_before, f"the client did not use {PREFERRED_MASTER} before"
    assert o.client_followed_other_at is not None, (
        f"{o.fault}: the client never followed {OTHER}'s gratuitous ARP during the split"
    )
    assert o.client_converged_at is not None, (
        f"{o.fault}: the client still sends VIP traffic to {OTHER} {HEAL_BOUND + 5:.1f} s "
        f"after the repair"
    )
    assert o.client_converged_at - o.repaired_at <= HEAL_BOUND
