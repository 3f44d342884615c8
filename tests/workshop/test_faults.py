"""Every instructor fault applied through the command line (`python -m harness fault`, what
`make fault` runs), its effect seen in the lab, then `make heal`: the lab passes every
start-state check again and the state file is empty.  Healing undoes faults newest first.

The live view's model (`harness.watch`, the same sources `make watch` draws) runs through all
of them: it must keep answering and show each fault's effect within a second (plus one read
on a busy machine) of the harness's own probe seeing it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from harness import Lab, arp_answers, masters, servers_answering, wait_until
from harness.checks import instance_of, real_server_health, start_state
from harness.faults import FAULTS, applied
from harness.probes import director_status
from harness.topology import REACTION_MARGIN, lab_topology
from harness.watch import Snapshot, Watch, lab_watch

TOPO = lab_topology()
MASTER = TOPO.preferred_master.name
(BACKUP, *_) = TOPO.others(MASTER)
RS1, RS2 = TOPO.real_server_names[:2]
BOUND = max(d.master_down_interval for d in TOPO.directors) + REACTION_MARGIN


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


# fault -> (arguments, what must hold once it is applied)
EFFECTS: dict[str, tuple[tuple[str, ...], Callable[[Lab], bool]]] = {
    "kill": ((), lambda lab: lab.state(MASTER) == "exited" and masters(lab) == {BACKUP}),
    "pause": ((), lambda lab: lab.state(MASTER) == "paused" and masters(lab) == {MASTER, BACKUP}),
    "partition": ((), lambda lab: masters(lab) == {MASTER, BACKUP}),
    "isolate": (
        (),
        lambda lab: (
            "state DOWN" in lab.exec(MASTER, ["ip", "-o", "link", "show", "dev", "eth0"]).output
            and BACKUP in masters(lab)
        ),
    ),
    "arp-leak": ((RS1,), lambda lab: RS1 in {a.service for a in arp_answers(lab)}),
    "httpd-stop": (
        (RS1,),
        lambda lab: (
            real_server_health(director_status(lab, MASTER), lab).get(RS1) is False
            and set(servers_answering(lab, requests=10)) == {RS2}
        ),
    ),
    "priority": (
        (BACKUP, "PRIORITY=200"),
        lambda lab: masters(lab) == {BACKUP} and _effective_priority(lab, BACKUP) == 200,
    ),
}


# fault -> what the live view must show once the probe has seen the effect
SHOWN: dict[str, Callable[[Snapshot], bool]] = {
    "kill": lambda s: s.holders == [BACKUP] and s.directors[0].container == "exited",
    "pause": lambda s: set(s.holders) == {MASTER, BACKUP} and s.directors[0].container == "paused",
    "partition": lambda s: set(s.holders) == {MASTER, BACKUP},
    "isolate": lambda s: BACKUP in s.holders,
    "arp-leak": lambda s: s.holders == [MASTER],
    "httpd-stop": lambda s: s.health().get(RS1) is False,
    "priority": lambda s: (
        s.holders == [BACKUP] and next(d for d in s.directors if d.name == BACKUP).priority == 200
    ),
}
VIEW_LAG = 1.0 + REACTION_MARGIN  # s: a second, plus one read of a busy (or frozen) node


@pytest.fixture(scope="module")
def view(lab: Lab) -> Iterator[Watch]:
    watch = lab_watch(lab).start()
    try:
        yield watch
    finally:
        watch.stop()


def test_every_fault_has_a_lab_test() -> None:
    assert set(EFFECTS) == set(FAULTS) == set(SHOWN)


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_applies_and_heal_returns_the_start_state(
    name: str, healed_after: Lab, view: Watch
) -> None:
    lab = healed_after
    args, effect = EFFECTS[name]
    applying = harness("fault", name, *args)
    assert applying.returncode == 0, applying.stderr
    assert applying.stdout.startswith("applied: "), applying.stdout
    assert [r["fault"] for r in applied(lab)] == [name]
    wait_until(lambda: effect(lab), timeout=BOUND + 5, what=f"the {name} fault to show")
    seen_at = time.time()

    def shown() -> Snapshot | None:
        snap = view.snapshot()
        return snap if SHOWN[name](snap) else None

    snap = wait_until(
        shown, timeout=VIEW_LAG, interval=0.05, what=f"the live view to show the {name} fault"
    )
    assert snap.at - seen_at <= VIEW_LAG

    # `heal` grades the start state itself and exits 0 only if every step passed.
    healing = harness("heal")
    assert healing.returncode == 0, healing.stdout + healing.stderr
    assert f"undo {name}" in healing.stdout
    steps = len(start_state())
    assert f"{steps}/{steps} steps passed" in healing.stdout, healing.stdout
    assert applied(lab) == []


def test_heal_undoes_faults_newest_first(healed_after: Lab) -> None:
    for args in (("arp-leak", RS2), ("httpd-stop", RS1)):
        assert harness("fault", *args).returncode == 0
    healing = harness("heal")
    assert healing.returncode == 0, healing.stdout + healing.stderr
    lines = [line for line in healing.stdout.splitlines() if line.startswith("undo ")]
    assert lines[:2] == [f"undo httpd-stop {RS1}: done", f"undo arp-leak {RS2}: done"]


def test_a_fault_on_the_wrong_kind_of_node_is_refused(lab: Lab) -> None:
    result = harness("fault", "httpd-stop", MASTER)
    assert result.returncode == 2
    assert "applies to: realserver" in result.stderr
    assert applied(lab) == []
