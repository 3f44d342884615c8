"""Hostile neighbours: the Master's CPU and state under floods, keepalived and vipkeeper alike.

The cases are vipkeeper.testing.hostile's: a Master alone on a LAN (priority 200, VRID 51, advert
interval 1 s) and an attacker that is not its peer, sending as fast as one Python process can
for --seconds: priority-254 adverts from a non-peer with unicast_peer configured (keepalived gets
`check_unicast_src`, which it needs to check the source; vipkeeper checks it whenever peers are
configured), priority-254 v2 adverts with a wrong PASS password, priority-100 adverts, malformed
ARP frames for the VIP, and priority-254 adverts carrying the password read off the wire. The
non-peer flood runs again against vipkeeper with `vrrp_peer_filter` (the kernel drops it;
keepalived has no such keyword, so that row has no keepalived run): compare its CPU with the
unfiltered row's.

For each case and daemon, in a fresh lab: once the Master holds the VIP, its CPU time over
--seconds without the flood, then over --seconds of flood (all of the daemon's processes and
threads, schedstat), the packets sent, whether its state changed (a state line in its log after
it became Master) and whether it still holds the VIP. Runs alternate between the daemons, so
machine drift falls on both alike. Prints a table with vipkeeper / keepalived CPU ratios.

    sudo .venv/bin/python bench/hostile.py [--seconds 5] [--cases a,b] [--markdown]
                                           [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _netns import (
    DAEMONS,
    Lab,
    cpu_seconds,
    machine_summary,
    start_daemon,
    vips_on,
)
from vipkeeper.testing.hostile import (
    ATTACKER,
    CASES,
    PEER,
    Case,
    flood_count,
    master_config,
    start_flood,
    vip,
)
from vipkeeper.testing.waits import wait_until

SUBNET = 0
_KEEPALIVED_STATE = re.compile(r"Entering (\w+) STATE")


def states(log: str, daemon: str) -> list[str]:
    """The states the daemon's log says it entered, in order."""
    if daemon == "keepalived":
        return _KEEPALIVED_STATE.findall(log)
    found = []
    for line in log.splitlines():
        if line.startswith("{") and "new_state" in line:
            found.append(json.loads(line)["new_state"])
    return found


def one_run(daemon: str, case: Case, seconds: float) -> dict[str, Any]:
    with Lab() as lab:
        master = lab.add_host("r1", [f"10.{SUBNET}.0.1/24"])
        lab.add_host("r2", [f"10.{SUBNET}.0.{PEER}/24"])
        attacker = lab.add_host("evil", [f"10.{SUBNET}.0.{ATTACKER}/24"])
        extra = ["--log-format", "json"] if daemon == "vipkeeper" else []
        started = start_daemon(lab, master, daemon, master_config(case, SUBNET), extra_args=extra)
        held = f"{vip(SUBNET)}/24"
        wait_until(
            lambda: held in vips_on(master), timeout=30, what=f"{daemon} Master holds {held}"
        )
        wait_until(
            lambda: "MASTER" in states(started.log(), daemon), timeout=10, what="MASTER logged"
        )
        before = len(states(started.log(), daemon))
        pids = started.pids()
        start = cpu_seconds(pids)
        time.sleep(seconds)  # the quiet window: a fixed length to compare, not a condition
        quiet = cpu_seconds(pids) - start
        flood = start_flood(lab, attacker, case, SUBNET, seconds)
        start = cpu_seconds(pids)
        sent = flood_count(flood, timeout=seconds + 60)
        flooded = cpu_seconds(pids) - start
        time.sleep(1.0)  # one advert interval for a late reaction to show
        later = states(started.log(), daemon)[before:]
        result = {
            "daemon": daemon,
            "case": case.name,
            "sent": sent,
            "rate": sent / seconds,
            "quiet_cpu": quiet / seconds,
            "flood_cpu": flooded / seconds,
            "state_changes": later,
            "holds_vip": held in vips_on(master),
        }
        started.stop()
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    chosen = [c for c in CASES if c.name in args.cases.split(",")]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for case in chosen:
        for daemon in ("vipkeeper",) if case.peer_filter else DAEMONS:
            result = one_run(daemon, case, args.seconds)
            results[(case.name, daemon)] = result
            print(f"{case.name} {daemon}: {result['rate']:.0f}/s sent, CPU "
                  f"{result['quiet_cpu']:.1%} quiet, {result['flood_cpu']:.1%} flooded, "
                  f"state changes {result['state_changes']}, holds VIP {result['holds_vip']}",
                  file=sys.stderr, flush=True)  # fmt: skip
    print(f"# {machine_summary()}")
    print(f"# {args.seconds:g} s quiet, then {args.seconds:g} s of flood, per case and daemon")
    header = ("case", "flood rate (/s)", "keepalived CPU quiet / flooded",
              "vipkeeper CPU quiet / flooded", "ratio vk/ka flooded",
              "state change ka / vk", "expected")  # fmt: skip
    rows = []
    for case in chosen:
        vk = results[(case.name, "vipkeeper")]
        ka = results.get((case.name, "keepalived"))
        if ka is None:  # vipkeeper alone (vrrp_peer_filter)
            rows.append((
                case.name, f"- / {vk['rate']:,.0f}", "-",
                f"{vk['quiet_cpu']:.1%} / {vk['flood_cpu']:.1%}", "-",
                f"- / {'yes' if vk['state_changes'] else 'no'}",
                "yes" if case.state_change_expected else "no",
            ))  # fmt: skip
            continue
        # Below half a percent both are idle: a ratio of two noises says nothing.
        idle = max(ka["flood_cpu"], vk["flood_cpu"]) < 0.005
        ratio = "-" if idle else f"{vk['flood_cpu'] / max(ka['flood_cpu'], 1e-9):.2f}"
        rows.append((
            case.name,
            f"{ka['rate']:,.0f} / {vk['rate']:,.0f}",
            f"{ka['quiet_cpu']:.1%} / {ka['flood_cpu']:.1%}",
            f"{vk['quiet_cpu']:.1%} / {vk['flood_cpu']:.1%}",
            ratio,
            f"{'yes' if ka['state_changes'] else 'no'} / {'yes' if vk['state_changes'] else 'no'}",
            "yes" if case.state_change_expected else "no",
        ))  # fmt: skip
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in (header, *rows):
            print("  ".join(f"{cell:>24}" for cell in row))
    if args.json is not None:
        args.json.write_text(json.dumps([results[k] for k in sorted(results)], indent=2))
    wrong = [
        f"{r['daemon']} {r['case']}"
        for r in results.values()
        if r["daemon"] == "vipkeeper"
        and bool(r["state_changes"])
        != next(c for c in chosen if c.name == r["case"]).state_change_expected
    ]
    if wrong:
        print(f"unexpected state behaviour: {', '.join(wrong)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
