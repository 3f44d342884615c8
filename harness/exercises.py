"""The workshop's exercises: their pages (docs/workshop/NN-*.md) and the checker that grades
each one in the attendee's lab (`make check EX=<n>`), step by step.

Owns: the list of exercises (number, page, title read from the page's first heading) and what
each checker asks of the lab.  Must never: change the lab (a checker only looks).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from harness import checks
from harness.checks import Step
from harness.lab import Lab
from harness.topology import Topology, lab_topology

PAGES = Path("docs/workshop")  # relative to the repository root
MY_TESTS = "my-tests"  # where exercise 7 has the attendee write a test


@dataclass(frozen=True, kw_only=True)
class Exercise:
    number: int
    page: Path
    steps: Callable[[Topology], list[Step]]

    @property
    def title(self) -> str:
        first = self.page.read_text().splitlines()[0]
        return re.sub(r"^#\s*\d+\.\s*", "", first).strip()


# --- the checkers -------------------------------------------------------------------------------
def _find_master(topo: Topology) -> list[Step]:
    master = topo.preferred_master.name
    return [
        checks.vip_held_by(master),
        checks.status_state(master, "MASTER"),
        *(checks.status_state(d, "BACKUP") for d in topo.others(master)),
        checks.only_mac_answers_arp(master),
        checks.servers_answer(),
    ]


def _file_exists(path: str, hint: str) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        found = (lab.topology.root / path).exists()
        return found, "found" if found else "missing"

    return Step(what=f"{path} exists", probe=probe, hint=hint)


def _failover(topo: Topology) -> list[Step]:
    master = topo.preferred_master.name
    (backup, *_) = topo.others(master)

    def master_down(lab: Lab) -> tuple[bool, str]:
        state = lab.state(master)
        return state not in ("running", "paused"), f"{master} is {state}"

    return [
        Step(
            what=f"{master} (the MASTER at the start) is down",
            probe=master_down,
            hint=f"`make timeline NAME=kill NODE={master}` kills it while recording",
        ),
        checks.vip_held_by(backup),
        checks.status_state(backup, "MASTER"),
        checks.client_arp_on(backup),
        checks.servers_answer(),
        _file_exists(
            "artifacts/workshop/kill.png",
            "`make timeline NAME=kill` writes the plot when the VIP has settled",
        ),
    ]


def _arp_problem(topo: Topology) -> list[Step]:
    master = topo.preferred_master.name
    steps = [_suppressed(rs) for rs in topo.real_server_names]
    steps += [checks.only_mac_answers_arp(master), checks.servers_answer()]
    steps.append(checks.client_arp_on(master))
    return steps


def _suppressed(real_server: str) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        result = lab.exec(real_server, ["vipset.sh", "status"])
        line = next((s for s in result.output.splitlines() if s.startswith("all ")), "?")
        return result.ok, line

    return Step(
        what=f"{real_server} holds the VIP on lo with ARP suppressed (arp_ignore=1, "
        "arp_announce=2)",
        probe=probe,
        hint=f"`docker compose exec {real_server} vipset.sh status` shows the values; step 4 "
        "of the page sets them from a helper container",
    )


def _split_brain(topo: Topology) -> list[Step]:
    master = topo.preferred_master.name
    return [
        checks.no_fault_present(),
        checks.vip_held_by(master),
        *(checks.status_state(d, "BACKUP") for d in topo.others(master)),
        checks.only_mac_answers_arp(master),
        checks.client_arp_on(master),
        checks.servers_answer(),
    ]


def _drain(topo: Topology) -> list[Step]:
    drained, *rest = topo.real_server_names
    return [
        checks.real_server_healthy(drained, False),
        *(checks.real_server_healthy(rs, True) for rs in rest),
        checks.servers_answer(tuple(rest)),
    ]


def _priority(topo: Topology) -> list[Step]:
    master = topo.preferred_master.name
    (backup, *_) = topo.others(master)
    raised = min(254, topo.preferred_master.priority + 50)

    def repo_unchanged(lab: Lab) -> tuple[bool, str]:
        result = subprocess.run(
            ["git", "diff", "--quiet", "--", "lab"], cwd=lab.topology.root, check=False
        )
        return result.returncode == 0, "unchanged" if result.returncode == 0 else "edited"

    def not_restarted(lab: Lab) -> tuple[bool, str]:
        from harness.faults import applied

        records = [r for r in applied(lab) if r["fault"] == "priority" and r["node"] == backup]
        if not records:
            return False, f"no priority change of {backup} recorded by `make fault`"
        started = lab.container(backup).attrs["State"]["StartedAt"]
        before = records[0]["params"].get("started_at")
        return started == before, f"running since {started}"

    return [
        checks.effective_priority(backup, raised),
        checks.vip_held_by(backup),
        checks.status_state(backup, "MASTER"),
        checks.status_state(master, "BACKUP"),
        Step(
            what="the repository's lab/ configuration is untouched",
            probe=repo_unchanged,
            hint="change priorities in the copy the director mounts (the priority fault does), "
            "never in lab/dir*/keepalived.conf: `git checkout lab/`",
        ),
        Step(
            what=f"{backup} was reloaded, not restarted",
            probe=not_restarted,
            hint="a reload (SIGHUP) keeps the daemon; `docker compose restart` is not a reload",
        ),
    ]


def _own_test(topo: Topology) -> list[Step]:
    def has_test(lab: Lab) -> tuple[bool, str]:
        files = sorted((lab.topology.root / MY_TESTS).glob("test_*.py"))
        asserting = [f for f in files if re.search(r"^\s*assert\b", f.read_text(), re.M)]
        return bool(asserting), ", ".join(f.name for f in asserting) or "no test with an assert"

    def passes(lab: Lab) -> tuple[bool, str]:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", MY_TESTS],
            cwd=lab.topology.root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        last = (result.stdout.strip().splitlines() or ["no output"])[-1]
        return result.returncode == 0, last

    return [
        Step(
            what=f"{MY_TESTS}/ holds a test that asserts something",
            probe=has_test,
            hint=f"write {MY_TESTS}/test_<what>.py as on the page; a test without an assert "
            "can never fail",
        ),
        Step(
            what=f"`pytest {MY_TESTS}` passes against the lab",
            probe=passes,
            hint=f"run `.venv/bin/pytest {MY_TESTS} -x` and read the first failure",
        ),
    ]


CHECKERS: dict[int, Callable[[Topology], list[Step]]] = {
    1: _find_master,
    2: _failover,
    3: _arp_problem,
    4: _split_brain,
    5: _drain,
    6: _priority,
    7: _own_test,
}


def exercises(root: Path | None = None) -> list[Exercise]:
    root = root or lab_topology().root
    found = []
    for page in sorted((root / PAGES).glob("[0-9][0-9]-*.md")):
        number = int(page.name[:2])
        if number in CHECKERS:
            found.append(Exercise(number=number, page=page, steps=CHECKERS[number]))
    return found


def list_exercises(out: TextIO) -> int:
    for ex in exercises():
        print(f"{ex.number}. {ex.title}  ({ex.page.relative_to(lab_topology().root)})", file=out)
    print("\nmake check EX=<n> grades one;  docs/workshop/README.md is the overview", file=out)
    return 0


def check_exercise(lab: Lab, number: int, out: TextIO) -> int:
    by_number = {ex.number: ex for ex in exercises(lab.topology.root)}
    if number not in by_number:
        print(f"no exercise {number}; `make exercise` lists them", file=out)
        return 2
    ex = by_number[number]
    outcomes = checks.run(lab, ex.steps(lab.topology))
    ok = checks.report(f"exercise {number}: {ex.title}", outcomes, out)
    return 0 if ok else 1
