"""Every instructor fault applied and undone: its effect seen in the lab by the harness's own
probes, then `make heal` (`python -m harness heal`): the lab passes every start-state check again
and the state file is empty.  Healing undoes faults newest first; `make fault` records what it
applied and refuses a fault on the wrong kind of node.

The live view's model (`harness.watch`, the sources `make watch` draws) runs through all of
them, sampled as its screen is (REFRESH times a second), and must show each fault within
VIEW_BOUND (one second) of the fault's `apply()` returning.  What "the fault" is on the screen,
per fault:

  kill        the node's container shown exited
  pause       the node's container shown paused
  isolate     the node's front link shown down
  arp-leak    the real server shown answering ARP for the VIP (suppression off)
  httpd-stop  the real server's httpd shown stopped
  priority    the director's new effective priority shown (apply returns after the reload)
  partition   nothing shows at once: the directors only stop hearing each other, and the first
              visible effect is the protocol's (below)

What the protocol does next is bounded by the protocol plus VIEW_BOUND: the VIP changing hands
(kill, isolate, priority), both directors holding it (pause, partition) within the slowest
Master_Down_Interval, and the MASTER's checker draining the real server (httpd-stop) within the
checker's down bound."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness import Lab, arp_answers, masters, servers_answering, wait_until
from harness.checks import instance_of, real_server_health, start_state
from harness.faults import FAULTS, applied, make, remember
from harness.probes import director_status
from harness.topology import lab_topology
from harness.watch import REFRESH, VIEW_BOUND, Snapshot, Watch, lab_watch

from vipkeeper.testing.threads import Sampler

TOPO = lab_topology()
MASTER = TOPO.preferred_master.name
(BACKUP, *_) = TOPO.others(MASTER)
RS1, RS2 = TOPO.real_server_names[:2]
MDI = max(d.master_down_interval for d in TOPO.directors)
CHECK_DOWN = TOPO.health.down_bound()
SETTLE = 5.0  # s the harness's own probes may take beyond a bound to see an effect


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=TOPO.root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _effective_priority(lab: Lab, director: str) -> object:
    return (instance_of(director_status(lab, director)) or {}).get("effective_priority")


Shown = Callable[[Snapshot], bool]


@dataclass(frozen=True, kw_only=True)
class Case:
    node: str
    params: dict[str, Any] = field(default_factory=dict)
    effect: Callable[[Lab], bool]  # the harness's probes see the fault
    at_once: Shown | None  # the view shows the fault itself (VIEW_BOUND)
    then: Shown | None  # the view shows what the protocol made of it
    protocol: float = 0.0  # s: the protocol's bound for `then`, from apply() returning


CASES: dict[str, Case] = {
    "kill": Case(
        node=MASTER,
        effect=lambda lab: lab.state(MASTER) == "exited" and masters(lab) == {BACKUP},
        at_once=lambda s: s.director(MASTER).container == "exited",
        then=lambda s: s.holders == [BACKUP],
        protocol=MDI,
    ),
    "pause": Case(
        node=MASTER,
        effect=lambda lab: lab.state(MASTER) == "paused" and masters(lab) == {MASTER, BACKUP},
        at_once=lambda s: s.director(MASTER).container == "paused",
        then=lambda s: set(s.holders) == {MASTER, BACKUP},
        protocol=MDI,
    ),
    "partition": Case(
        node=MASTER,
        params={"directors": [MASTER, BACKUP]},
        effect=lambda lab: masters(lab) == {MASTER, BACKUP},
        at_once=None,
        then=lambda s: set(s.holders) == {MASTER, BACKUP},
        protocol=MDI,
    ),
    "isolate": Case(
        node=MASTER,
        effect=lambda lab: (
            "state DOWN"
            in lab.exec(MASTER, ["ip", "-o", "link", "show", "dev", TOPO.front_if(MASTER)]).output
            and BACKUP in masters(lab)
        ),
        at_once=lambda s: s.director(MASTER).link == "down",
        then=lambda s: BACKUP in s.holders,
        protocol=MDI,
    ),
    "arp-leak": Case(
        node=RS1,
        effect=lambda lab: RS1 in {a.service for a in arp_answers(lab)},
        at_once=lambda s: getattr(s.real_server(RS1), "arp_suppressed", None) is False,
        then=None,
    ),
    "httpd-stop": Case(
        node=RS1,
        effect=lambda lab: (
            real_server_health(director_status(lab, MASTER), lab).get(RS1) is False
            and set(servers_answering(lab, requests=10)) == {RS2}
        ),
        at_once=lambda s: getattr(s.real_server(RS1), "httpd", None) is False,
        then=lambda s: s.health().get(RS1) is False,
        protocol=CHECK_DOWN,
    ),
    "priority": Case(
        node=BACKUP,
        params={"priority": 200},
        effect=lambda lab: masters(lab) == {BACKUP} and _effective_priority(lab, BACKUP) == 200,
        at_once=lambda s: s.director(BACKUP).priority == 200,
        then=lambda s: s.holders == [BACKUP],
        protocol=MDI,
    ),
}


class Screen(Sampler):
    """The view's snapshots taken as `make watch` takes them, REFRESH times a second."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(1 / REFRESH, join_timeout=10)
        self.watch = watch
        self.shots: list[Snapshot] = []

    def sample(self) -> None:
        self.shots.append(self.watch.snapshot())

    def first(self, shown: Shown, after: float) -> Snapshot | None:
        return next((s for s in list(self.shots) if s.at >= after and shown(s)), None)


@pytest.fixture(scope="module")
def view(lab: Lab) -> Iterator[Watch]:
    watch = lab_watch(lab).start()
    try:
        yield watch
    finally:
        watch.stop()


def test_every_fault_has_a_lab_test() -> None:
    assert set(CASES) == set(FAULTS)


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_shows_in_the_view_within_a_second_and_heal_returns_the_start_state(
    name: str, healed_after: Lab, view: Watch
) -> None:
    lab = healed_after
    case = CASES[name]
    wait_until(
        lambda: (
            view.snapshot().holders == [MASTER] and all(d.state for d in view.snapshot().directors)
        ),
        timeout=30,
        what="the live view to show the start state",
    )
    with Screen(view) as screen:
        fault = make(lab, name, case.node, **case.params)
        applied_at = fault.apply()
        remember(lab, fault)
        delays: dict[str, float] = {}
        for what, shown, bound in (
            ("the fault", case.at_once, VIEW_BOUND),
            ("the protocol's answer", case.then, case.protocol + VIEW_BOUND),
        ):
            if shown is None:
                continue
            snap = wait_until(
                lambda shown=shown: screen.first(shown, applied_at),  # type: ignore[misc]
                timeout=bound + SETTLE,
                what=f"the live view to show {what} ({name})",
            )
            delays[what] = snap.at - applied_at
        print(f"{name}: shown after " + ", ".join(f"{w} {d:.2f} s" for w, d in delays.items()))
        assert delays, "a fault must show in the view one way or the other"
        assert delays.get("the fault", 0.0) <= VIEW_BOUND, delays
        assert delays.get("the protocol's answer", 0.0) <= case.protocol + VIEW_BOUND, delays
    assert [r["fault"] for r in applied(lab)] == [name]
    wait_until(lambda: case.effect(lab), timeout=SETTLE, what=f"the probes to see the {name} fault")

    # `heal` grades the start state itself and exits 0 only if every step passed.
    healing = harness("heal")
    assert healing.returncode == 0, healing.stdout + healing.stderr
    assert f"undo {name}" in healing.stdout
    steps = len(start_state())
    assert f"{steps}/{steps} steps passed" in healing.stdout, healing.stdout
    assert applied(lab) == []


def test_heal_undoes_faults_newest_first(healed_after: Lab) -> None:
    for args in (("arp-leak", RS2), ("httpd-stop", RS1)):
        result = harness("fault", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"applied: {' '.join(args)}"), result.stdout
    records = [(r["fault"], r["node"]) for r in applied(healed_after)]
    assert records == [("arp-leak", RS2), ("httpd-stop", RS1)]
    healing = harness("heal")
    assert healing.returncode == 0, healing.stdout + healing.stderr
    lines = [line for line in healing.stdout.splitlines() if line.startswith("undo ")]
    assert lines[:2] == [f"undo httpd-stop {RS1}: done", f"undo arp-leak {RS2}: done"]


def test_a_fault_on_the_wrong_kind_of_node_is_refused(lab: Lab) -> None:
    result = harness("fault", "httpd-stop", MASTER)
    assert result.returncode == 2
    assert "applies to: realserver" in result.stderr
    assert applied(lab) == []
