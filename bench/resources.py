"""CPU and memory of keepalived and vipkeeper as Master and as Backup, in the same run.

Scenarios (both routers start as BACKUP, r1 has priority 150 and becomes Master, r2 has 100):

    1 instance    VRRPv3, advert_int 0.01  (VRID 1, one VIP)
    200 instances VRRPv3, advert_int 0.1   (VRIDs 1..200, one VIP each)

For each scenario and daemon a fresh lab is built; once r1 holds every VIP and r2 none, the
benchmark waits `--settle` seconds, then reads the run time of every process in each router's
namespace, every thread of each, from /proc/PID/task/TID/schedstat (nanoseconds; user +
system) at the start and the end of a `--window` second window (keepalived: the parent and its
VRRP child; vipkeeper: its one process, event loop and autopilot threads). CPU is that time
over the window, in % of one core. RSS is VmRSS from /proc/PID/status at the end of the
window, summed over the same processes. Ratios are
vipkeeper / keepalived. Targets: vipkeeper's CPU within 3x keepalived's, RSS under
60 MB.

    sudo .venv/bin/python bench/resources.py [--window 20] [--markdown] [--json FILE]

Root only; all traffic stays inside the lab's namespaces, which are removed after every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _netns import (
    DAEMONS,
    Lab,
    cpu_seconds,
    elected,
    machine_summary,
    rss_kib,
    start_routers,
    vips_on,
)
from vipkeeper.testing.waits import WaitTimeout, wait_until

CPU_RATIO_TARGET = 3.0
RSS_TARGET_MB = 60.0


@dataclass(frozen=True)
class Scenario:
    label: str
    instances: int
    advert_int: float


SCENARIOS = (
    Scenario("1 instance, v3 advert_int 0.01", 1, 0.01),
    Scenario("200 instances, v3 advert_int 0.1", 200, 0.1),
)


@dataclass(frozen=True)
class Reading:
    daemon: str
    scenario: str
    role: str  # "Master" or "Backup"
    cpu_percent: float  # of one core, over the window
    rss_mb: float  # VmRSS summed over the daemon's processes, MiB
    processes: int
    note: str = ""  # what went wrong, e.g. the election had not converged


def vips_for(count: int) -> list[tuple[int, str]]:
    # 10.0.1.1 .. 10.0.1.200 on a /16 that also holds the routers' own addresses.
    return [(vrid, f"10.0.1.{vrid}/16") for vrid in range(1, count + 1)]


def measure(
    daemon: str,
    scenario: Scenario,
    window: float,
    settle: float,
    converge: float = 60.0,
    profile_dir: Path | None = None,
) -> list[Reading]:
    vips = vips_for(scenario.instances)
    wanted = {vip for _vrid, vip in vips}
    with Lab() as lab:

        def profile(role: str) -> Path | None:
            if profile_dir is None or daemon != "vipkeeper":
                return None
            return profile_dir / f"vipkeeper-{scenario.instances}-{role}.pstats"

        pair = start_routers(
            lab,
            daemon,
            version=3,
            advert_int=scenario.advert_int,
            vips=vips,
            prefixlen=16,
            profiles=(profile("master"), profile("backup")),
        )
        daemons = dict(zip(("Master", "Backup"), pair, strict=True))
        r1, r2 = (each.host for each in pair)

        def held() -> str:
            on1, on2 = len(wanted & vips_on(r1)), len(wanted & vips_on(r2))
            return f"r1 held {on1}/{len(wanted)} VIPs, r2 {on2}"

        note = ""
        try:
            wait_until(
                lambda: elected(pair, wanted),
                timeout=converge,
                what=f"{daemon}: r1 holds all {len(wanted)} VIPs, r2 none",
                interval=0.2,
            )
            time.sleep(settle)  # past the start-up work (gratuitous ARP rounds, first adverts)
        except WaitTimeout:
            # Measure anyway, and say so: a daemon that cannot elect is a finding, not a crash.
            note = f"not converged after {converge:g} s: " + held()
            print(f"# {daemon}: {note}", file=sys.stderr)
        pids = {role: d.pids() for role, d in daemons.items()}
        for d in daemons.values():
            d.profile_clear()
        before = {role: cpu_seconds(p) for role, p in pids.items()}
        started = time.monotonic()
        time.sleep(window)
        after = {role: cpu_seconds(p) for role, p in pids.items()}
        elapsed = time.monotonic() - started
        rss = {role: rss_kib(p) for role, p in pids.items()}
        if not note and not elected(pair, wanted):
            note = "the election changed during the window: " + held()
        elif note:
            note += "; at the end " + held()
        for role, d in daemons.items():
            written = d.profile_dump()
            if written is not None:
                print(f"# profile of the {role} over the window: {written}", file=sys.stderr)
        return [
            Reading(
                daemon=daemon,
                scenario=scenario.label,
                role=role,
                cpu_percent=100.0 * (after[role] - before[role]) / elapsed,
                rss_mb=rss[role] / 1024,
                processes=len(pids[role]),
                note=note,
            )
            for role in daemons
        ]


def print_table(readings: list[Reading], markdown: bool) -> None:
    header = [
        "scenario",
        "role",
        "keepalived CPU %",
        "vipkeeper CPU %",
        "CPU ratio vk/ka (target <= 3)",
        "keepalived RSS MB",
        "vipkeeper RSS MB",
        "RSS ratio vk/ka",
        "vipkeeper RSS < 60 MB",
    ]
    lines = []
    notes: list[str] = []
    for scenario in SCENARIOS:
        for role in ("Master", "Backup"):
            cell = {
                r.daemon: r for r in readings if r.scenario == scenario.label and r.role == role
            }
            if not cell:
                continue
            ka, vk = cell.get("keepalived"), cell.get("vipkeeper")
            cpu_ratio = vk.cpu_percent / ka.cpu_percent if ka and vk and ka.cpu_percent else None
            rss_ratio = vk.rss_mb / ka.rss_mb if ka and vk and ka.rss_mb else None
            marks = {}
            for reading in (ka, vk):
                if reading is not None and reading.note:
                    text = f"{reading.daemon}, {scenario.label}: {reading.note}"
                    if text not in notes:
                        notes.append(text)
                    marks[reading.daemon] = f" (note {notes.index(text) + 1})"
            lines.append(
                [
                    scenario.label,
                    role,
                    f"{ka.cpu_percent:.2f}{marks.get('keepalived', '')}" if ka else "-",
                    f"{vk.cpu_percent:.2f}{marks.get('vipkeeper', '')}" if vk else "-",
                    "-"
                    if cpu_ratio is None
                    else f"{cpu_ratio:.2f} "
                    + ("met" if cpu_ratio <= CPU_RATIO_TARGET else "not met"),
                    f"{ka.rss_mb:.1f} ({ka.processes} proc)" if ka else "-",
                    f"{vk.rss_mb:.1f} ({vk.processes} proc)" if vk else "-",
                    "-" if rss_ratio is None else f"{rss_ratio:.2f}",
                    "-" if vk is None else ("met" if vk.rss_mb < RSS_TARGET_MB else "not met"),
                ]
            )
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=True)]
        for cells in [header, *lines]:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    for number, note in enumerate(notes, start=1):
        print(f"{'' if not markdown else chr(10) if number == 1 else ''}note {number}: {note}")


def median_readings(all_readings: list[Reading]) -> list[Reading]:
    merged = []
    keys = dict.fromkeys((r.daemon, r.scenario, r.role) for r in all_readings)
    for daemon, scenario, role in keys:
        same = [
            r for r in all_readings if (r.daemon, r.scenario, r.role) == (daemon, scenario, role)
        ]
        merged.append(
            Reading(
                daemon=daemon,
                scenario=scenario,
                role=role,
                cpu_percent=statistics.median(r.cpu_percent for r in same),
                rss_mb=statistics.median(r.rss_mb for r in same),
                processes=same[0].processes,
                note="; ".join(dict.fromkeys(r.note for r in same if r.note)),
            )
        )
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds (20)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before it (8)")
    parser.add_argument(
        "--converge", type=float, default=60.0, help="seconds allowed for the election (60)"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per cell, median shown (1)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--json", type=Path, help="also write every reading here")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: print the table of readings saved with --json",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run vipkeeper under cProfile, stats to DIR/vipkeeper-N-{master,backup}.pstats "
        "(the profiler itself costs CPU: do not compare those CPU figures)",
    )
    parser.add_argument(
        "--daemon", action="append", choices=DAEMONS, help="only this daemon (repeatable)"
    )
    parser.add_argument(
        "--instances", action="append", type=int, choices=[s.instances for s in SCENARIOS],
        help="only the scenario with this many instances (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    daemons = args.daemon or list(DAEMONS)
    if args.from_json:
        saved = [Reading(**r) for r in json.loads(args.from_json.read_text())]
        print_table(median_readings(saved), args.markdown)
        return 0
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    scenarios = [s for s in SCENARIOS if not args.instances or s.instances in args.instances]
    print(f"# {machine_summary()}", file=sys.stderr)
    readings: list[Reading] = []
    for run in range(1, args.runs + 1):
        for scenario in scenarios:
            for daemon in daemons:
                readings_now = measure(
                    daemon, scenario, args.window, args.settle, args.converge, args.profile
                )
                for reading in readings_now:
                    readings.append(reading)
                    print(
                        f"run {run} {scenario.label:<33} {daemon:<10} {reading.role:<6} "
                        f"CPU {reading.cpu_percent:6.2f} %  RSS {reading.rss_mb:5.1f} MB "
                        f"({reading.processes} processes) {reading.note}",
                        file=sys.stderr,
                        flush=True,
                    )
    print_table(median_readings(readings), args.markdown)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in readings], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
