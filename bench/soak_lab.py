"""Chaos soak over the Compose lab: seeded faults on directors and real servers under HTTP load.

The lab (compose.yaml: two directors, two Apache real servers, a client) runs as `make up`
leaves it. The client asks the VIP for a page every 0.1 s on a new connection (harness
HttpProber) for the whole run, while a seeded sequence of rounds plays: a fault from
harness/faults.py on a node it picks (kill and restart, or pause, of a director or a real
server; a VRRP partition of the directors; Apache stopped on a real server), held for a random
time, undone; then the round waits for the lab's starting state (the preferred director alone
holds the VIP, every real server answers through it: what harness/restore.py calls healthy)
and a steady phase follows.

A round's window runs from its fault (less one request timeout: a request begun just before
the fault can fail by it) to its recovery plus REACTION_MARGIN; a failed request
outside every window is a violation, as is a round that does not recover within its bound.
Ends with one summary line (violations, rounds, requests and failures, the requests outside
every window, recovery median / p95 / max), the rounds by fault, the machine's load average over
the rounds and, with --json, the figures and every round.

    flock /tmp/vipkeeper-lab.lock .venv/bin/python bench/soak_lab.py --minutes 10 [--seed N]
    make soak-lab DURATION=10 [SEED=N]

Brings the lab up from its images (what `make up` does after building them: the host firewall
rule, `docker compose up`, the up report) if it is not running, and takes it down at the end if
it did; `make soak-lab` builds the images first. The caller holds the machine-wide lab lock:
one lab at a time on a machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import HttpProber, Lab, LabError, make, masters, servers_answering  # noqa: E402
from harness.restore import restore  # noqa: E402
from harness.topology import REACTION_MARGIN  # noqa: E402

from vipkeeper.testing.waits import WaitTimeout, wait_until  # noqa: E402

REQUEST_TIMEOUT = 1.0  # s: the client's timeout for one request on a new connection
RECOVERY_TIMEOUT = 90.0  # s: from the undo to the starting state, before the round fails
# (fault, role): what a round may do; restart = kill and start again.
CATALOGUE = (
    ("kill", "director"),
    ("pause", "director"),
    ("partition", "directors"),
    ("kill", "realserver"),
    ("pause", "realserver"),
    ("httpd-stop", "realserver"),
)


@dataclass
class Round:
    number: int
    fault: str
    node: str
    hold: float
    begun: float  # wall clock, just before the fault was applied
    applied: float  # when applying it had finished (a stop or kill takes a moment)
    undone: float
    recovered: float | None  # wall clock; None: not within RECOVERY_TIMEOUT
    problem: str | None = None  # the lab was not as the round found it, or the fault failed

    @property
    def recovery(self) -> float | None:
        """Seconds from the undo to the starting state."""
        return None if self.recovered is None else self.recovered - self.undone


COMPOSE = ["docker", "compose", "-f", "compose.yaml"]


def lab_up() -> None:
    subprocess.run(["sh", "lab/host-firewall.sh", "add"], cwd=ROOT, check=True)
    subprocess.run([*COMPOSE, "up", "-d", "--remove-orphans"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "-m", "harness", "up-report"], cwd=ROOT, check=True)


def lab_down() -> None:
    subprocess.run([*COMPOSE, "down", "-v", "--remove-orphans", "--timeout", "5"], cwd=ROOT)
    subprocess.run(["sh", "lab/host-firewall.sh", "del"], cwd=ROOT)


def healthy(lab: Lab) -> bool:
    topo = lab.topology
    if masters(lab) != {topo.preferred_master.name}:
        return False
    return set(servers_answering(lab, requests=10, timeout=1.0)) == set(topo.real_server_names)


def play_round(lab: Lab, number: int, rng: random.Random) -> Round:
    kind, role = rng.choice(CATALOGUE)
    topo = lab.topology
    if role == "director":
        node: str | None = rng.choice(topo.director_names)
    elif role == "realserver":
        node = rng.choice(topo.real_server_names)
    else:
        node = None
    hold = round(rng.uniform(1.0, 8.0), 2)
    fault = make(lab, kind, node)
    begun = time.time()
    stopped = [s for s in topo.services if lab.state(s) != "running"]
    if stopped:
        # Nothing of the soak's stopped them: a container that exited by itself.
        problem = f"not running before the fault: {', '.join(stopped)}"
        restore(lab)
        now = time.time()
        return Round(number, kind, fault.node, hold, begun, now, now, None, problem)
    try:
        applied = fault.apply()
    except (LabError, docker.errors.DockerException) as error:
        restore(lab)
        now = time.time()
        return Round(number, kind, fault.node, hold, begun, now, now, None, f"apply: {error}")
    time.sleep(hold)  # the fault's length, drawn from the seed: nothing to poll
    undone = fault.undo()
    try:
        recovered: float | None = wait_until(
            lambda: time.time() if healthy(lab) else 0.0,
            timeout=RECOVERY_TIMEOUT,
            interval=0.3,
            what="the starting state",
        )
    except WaitTimeout:
        recovered = None
        restore(lab)  # the next round starts healthy all the same
    return Round(number, kind, fault.node if node else "directors", hold, begun, applied, undone,
                 recovered)  # fmt: skip


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)
    lab = Lab()
    brought_up = set(lab.containers()) != set(lab.topology.services)
    if brought_up:
        lab_up()
    rounds: list[Round] = []
    loads: list[float] = []  # the machine's 1-minute load average after each round
    try:
        restore(lab)
        duration = args.minutes * 60
        print(f"soak-lab: seed {seed}, {args.minutes:g} min", flush=True)
        prober = HttpProber(lab, interval=0.1, timeout=REQUEST_TIMEOUT, keepalive_streams=0,
                            max_seconds=duration + 600)  # fmt: skip
        with prober:
            started = time.time()
            while time.time() - started < duration:
                played = play_round(lab, len(rounds) + 1, rng)
                rounds.append(played)
                loads.append(os.getloadavg()[0])
                shown = "never" if played.recovery is None else f"{played.recovery:.1f} s"
                shown += f" ({played.problem})" if played.problem else ""
                print(f"  round {played.number}: {played.fault} {played.node} "
                      f"hold {played.hold:.1f} s, recovered {shown}", flush=True)  # fmt: skip
                time.sleep(rng.uniform(2.0, 6.0))  # the steady phase, also drawn from the seed
    finally:
        if brought_up:
            lab_down()
    requests = [r for r in prober.requests if r.kind == "new" and r.start >= started]
    # A request that began up to its own timeout before the fault can fail because of it.
    windows = [(r.begun - REQUEST_TIMEOUT,
                (r.recovered or r.undone + RECOVERY_TIMEOUT) + REACTION_MARGIN)
               for r in rounds]  # fmt: skip
    failed = [r for r in requests if not r.ok]
    unwatched = [r for r in requests if not any(a <= r.start <= b for a, b in windows)]
    outside = [r for r in unwatched if not r.ok]
    violations = [f"request at t+{r.start - started:.1f} s failed outside every window: "
                  f"{r.error or r.status}" for r in outside]  # fmt: skip
    violations += [f"round {r.number} ({r.fault} {r.node}): {r.problem}"
                   for r in rounds if r.problem is not None]  # fmt: skip
    violations += [f"round {r.number} ({r.fault} {r.node}) did not recover within "
                   f"{RECOVERY_TIMEOUT:g} s" for r in rounds
                   if r.recovered is None and r.problem is None]  # fmt: skip
    recoveries = [r.recovery for r in rounds if r.recovery is not None]

    def label(r: Round) -> str:
        node = lab.topology.nodes.get(r.node)
        return f"{r.fault} {node.role if node else r.node}"

    by_fault: dict[str, list[float]] = {}
    for r in rounds:
        if r.recovery is not None:
            by_fault.setdefault(label(r), []).append(r.recovery)
    in_windows = sum(b - a for a, b in windows)
    figures: dict[str, Any] = {
        "seed": seed,
        "minutes": args.minutes,
        "rounds": len(rounds),
        "violations": len(violations),
        "requests": len(requests),
        "failed": len(failed),
        "failed_outside_windows": len(outside),
        "requests_outside_windows": len(unwatched),
        "window_seconds": in_windows,
        "recovery_median": statistics.median(recoveries) if recoveries else None,
        "recovery_p95": percentile(recoveries, 0.95) if recoveries else None,
        "recovery_max": max(recoveries) if recoveries else None,
        "recovery_median_by_fault": {k: statistics.median(v) for k, v in sorted(by_fault.items())},
        "rounds_by_fault": dict(sorted(Counter(label(r) for r in rounds).items())),
        "load_average": [min(loads), max(loads)] if loads else None,
        "rounds_played": [asdict(r) for r in rounds],
        "failed_requests": [asdict(r) for r in failed],
        "violation_list": violations,
    }
    for line in violations:
        print(f"  VIOLATION {line}")
    print(f"soak-lab: violations: {len(violations)}, rounds: {len(rounds)}, requests: "
          f"{len(requests)}, failed: {len(failed)} ({len(outside)} of the {len(unwatched)} "
          f"requests outside the windows, which covered {in_windows:.0f} s), "
          f"recovery median/p95/max "
          f"{figures['recovery_median'] or 0:.1f}/{figures['recovery_p95'] or 0:.1f}/"
          f"{figures['recovery_max'] or 0:.1f} s; seed {seed}")  # fmt: skip
    print("recovery median by fault: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in figures["recovery_median_by_fault"].items()))  # fmt: skip
    print("rounds by fault: " + ", ".join(
        f"{k} {v}" for k, v in figures["rounds_by_fault"].items()))  # fmt: skip
    if loads:
        print(f"load average (1 min) over the rounds: {min(loads):.1f} to {max(loads):.1f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
