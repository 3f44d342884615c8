"""Graded checks of the lab: named steps that each PASS or FAIL with what was seen and, on a
failure, a hint; the start state and each exercise's checker are lists of them.

Owns: the step type, the probes as steps (who holds the VIP, what the directors' status says,
which MAC answers ARP, what the client's ARP cache holds, which real servers answer and are
healthy, which faults are present) and the report format.  Must never: change the lab; read a
log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO

from harness.faults import present_faults
from harness.lab import Lab
from harness.probes import (
    arp_answers,
    client_vip_mac,
    director_status,
    masters,
    servers_answering,
)


@dataclass(frozen=True, kw_only=True)
class Step:
    what: str  # what must hold, as a sentence
    probe: Callable[[Lab], tuple[bool, str]]  # (holds, what was seen)
    hint: str  # what to look at or do when it does not hold


@dataclass(frozen=True, kw_only=True)
class Outcome:
    step: Step
    ok: bool
    seen: str


PARALLEL_PROBES = 4  # steps probed side by side (each only looks; the report keeps their order)


def run(lab: Lab, steps: Iterable[Step]) -> list[Outcome]:
    def grade(step: Step) -> Outcome:
        try:
            ok, seen = step.probe(lab)
        except Exception as exc:  # a probe that cannot run is a failed step, with the reason
            ok, seen = False, f"{type(exc).__name__}: {exc}"
        return Outcome(step=step, ok=ok, seen=seen)

    with ThreadPoolExecutor(max_workers=PARALLEL_PROBES) as pool:
        return list(pool.map(grade, steps))


def report(title: str, outcomes: list[Outcome], out: TextIO) -> bool:
    """Print one line per step (PASS/FAIL, what must hold, what was seen) and a hint under
    each failure; return whether all passed."""
    print(title, file=out)
    for n, o in enumerate(outcomes, 1):
        print(f"  [{'PASS' if o.ok else 'FAIL'}] {n}. {o.step.what}: {o.seen}", file=out)
        if not o.ok:
            print(f"         hint: {o.step.hint}", file=out)
    passed = sum(o.ok for o in outcomes)
    print(f"{passed}/{len(outcomes)} steps passed", file=out)
    return passed == len(outcomes)


# --- reading the directors' status --------------------------------------------------------------
def instance_of(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The director's (first) VRRP instance in `vipkeeper status --json`."""
    instances = (status or {}).get("instances") or []
    return instances[0] if instances else None


def real_server_health(status: dict[str, Any] | None, lab: Lab) -> dict[str, bool | None]:
    """Real server (service name) -> healthy, from a director's status."""
    health: dict[str, bool | None] = {}
    for vs in (status or {}).get("virtual_servers") or []:
        for rs in vs.get("real_servers") or []:
            name = lab.topology.server_of_address(str(rs.get("address")))
            if name is not None:
                health[name] = healthy(rs)
    return health


def healthy(real_server: dict[str, Any]) -> bool | None:
    """A real server's entry in the status document: its checker says "up" or "down"."""
    health = real_server.get("health")
    return None if health is None else health == "up"


# --- steps --------------------------------------------------------------------------------------
def all_running() -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        states = {s: lab.state(s) for s in lab.topology.services}
        bad = {s: st for s, st in states.items() if st != "running"}
        return not bad, (f"not running: {bad}" if bad else "all running")

    return Step(
        what="every lab container runs",
        probe=probe,
        hint="`docker compose ps -a` shows which; `make heal` starts and unpauses them",
    )


def no_fault_present() -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        found = [f.label() for f in present_faults(lab)]
        return not found, (", ".join(found) if found else "none")

    return Step(
        what="no fault is left in the lab",
        probe=probe,
        hint="`make heal` undoes every fault",
    )


def vip_held_by(director: str) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        holders = masters(lab)
        return holders == {director}, "held by " + (", ".join(sorted(holders)) or "nobody")

    return Step(
        what=f"{director} alone holds the VIP",
        probe=probe,
        hint=f"`docker compose exec {director} ip -4 addr show` lists the VIP on the MASTER; "
        "two holders is a split brain, none a failover under way",
    )


def instance_probe(
    director: str, judge: Callable[[dict[str, Any]], tuple[bool, str]]
) -> Callable[[Lab], tuple[bool, str]]:
    """A probe that judges the director's VRRP instance as `vipkeeper status --json` shows it;
    no answer fails."""

    def probe(lab: Lab) -> tuple[bool, str]:
        instance = instance_of(director_status(lab, director))
        if instance is None:
            return False, "`vipkeeper status --json` did not answer"
        return judge(instance)

    return probe


def status_state(director: str, state: str) -> Step:
    def judge(instance: dict[str, Any]) -> tuple[bool, str]:
        seen = f"{instance.get('state')} (priority {instance.get('effective_priority')})"
        return instance.get("state") == state, seen

    return Step(
        what=f"{director} says it is {state}",
        probe=instance_probe(director, judge),
        hint=f"`docker compose exec {director} vipkeeper status` shows its state, priority and "
        "the reason of its last transition",
    )


def effective_priority(director: str, priority: int) -> Step:
    def judge(instance: dict[str, Any]) -> tuple[bool, str]:
        seen = instance.get("effective_priority")
        return seen == priority, f"priority {seen}"

    return Step(
        what=f"{director} runs with priority {priority}",
        probe=instance_probe(director, judge),
        hint="the priority fault edits a copy of the director's keepalived.conf and reloads "
        f"it: `make fault NAME=priority NODE={director} PRIORITY={priority}`",
    )


def only_mac_answers_arp(director: str) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        answers = arp_answers(lab)
        who = [f"{a.mac} ({a.service})" for a in answers]
        ok = [a.mac for a in answers] == [lab.mac(director, lab.topology.front_net)]
        return ok, "answered by " + (", ".join(who) or "nobody")

    return Step(
        what=f"only {director}'s MAC answers ARP for the VIP",
        probe=probe,
        hint="`docker compose exec client arping -c 3 -I eth0 VIP` lists every MAC that "
        "answers; a real server's MAC means its ARP suppression is off (arp_ignore/arp_announce)",
    )


def client_arp_on(director: str) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        mac = client_vip_mac(lab)
        if mac is None:
            return False, "no entry (the client has not resolved the VIP yet)"
        return mac == lab.mac(director, lab.topology.front_net), (
            f"{mac} ({lab.service_of_mac(mac)})"
        )

    return Step(
        what=f"the client's ARP entry for the VIP names {director}",
        probe=probe,
        hint="`docker compose exec client ip neigh show` shows it; only a gratuitous ARP (or "
        "the entry expiring) moves it; `ip neigh flush to VIP dev eth0` in the client forgets it",
    )


def servers_answer(expected: tuple[str, ...] | None = None, *, requests: int = 20) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        wanted = set(expected or lab.topology.real_server_names)
        answers = servers_answering(lab, requests=requests)
        seen = ", ".join(f"{s or 'failed'} {n}" for s, n in sorted(answers.items()))
        return set(answers) == wanted, seen

    names = " and ".join(expected) if expected else "every real server"
    return Step(
        what=f"{requests} new connections to the VIP are answered by {names}, none fails",
        probe=probe,
        hint="`docker compose exec client curl -s http://VIP/` answers with the real server's "
        "name; a failure with one MASTER usually means a real server is down and not yet drained",
    )


def real_server_healthy(real_server: str, expected: bool) -> Step:
    def probe(lab: Lab) -> tuple[bool, str]:
        holders = sorted(masters(lab))
        if not holders:
            return False, "no director holds the VIP"
        health = real_server_health(director_status(lab, holders[0]), lab)
        seen = health.get(real_server)
        return seen is expected, f"{holders[0]} says {'?' if seen is None else seen}"

    state = "healthy (in the pool)" if expected else "failed (drained from the pool)"
    return Step(
        what=f"the MASTER counts {real_server} {state}",
        probe=probe,
        hint="the MASTER's `vipkeeper status` lists each real server with its last check; a "
        "stopped httpd fails HTTP_GET after delay_loop + retries",
    )


def start_state() -> list[Step]:
    """The lab as `make up` leaves it and `make heal` must return it."""
    from harness.topology import lab_topology

    topo = lab_topology()
    preferred = topo.preferred_master.name
    steps = [all_running(), no_fault_present(), vip_held_by(preferred)]
    steps.append(status_state(preferred, "MASTER"))
    steps += [status_state(d, "BACKUP") for d in topo.others(preferred)]
    steps.append(only_mac_answers_arp(preferred))
    steps.append(servers_answer())
    steps += [real_server_healthy(rs, True) for rs in topo.real_server_names]
    return steps
