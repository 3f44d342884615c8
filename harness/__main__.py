"""python -m harness COMMAND: the lab's commands for people (make up, fault, heal, watch,
exercise, check call these).

  up-report           wait until the VIP answers HTTP, then say who holds it and what to try
  faults              list the faults, one line each
  fault NAME [NODE] [KEY=VALUE...]
                      apply a fault and record it in the state file
  heal                undo every recorded fault (newest first) and any fault still present,
                      then wait for the start state and grade it
  start-state         grade the lab against its start state
  watch               the live view (a terminal dashboard)
  exercises           list the workshop's exercises, one line each
  check N             grade exercise N step by step
  timeline NAME [NODE] [KEY=VALUE...]
                      apply a fault while recording who holds the VIP and every request from the
                      client; write artifacts/workshop/<name>.json and .png
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness.lab import Lab
from harness.probes import masters, servers_answering
from harness.topology import SCRAPE_INTERVAL
from vipkeeper.testing.waits import WaitTimeout, wait_until


def up_report(lab: Lab, timeout: float) -> int:
    topo = lab.topology
    try:
        wait_until(
            lambda: len(masters(lab)) == 1,
            timeout=timeout,
            interval=0.5,
            what="exactly one director to hold the VIP",
        )

        def all_answered() -> dict[str, int]:
            answers = servers_answering(lab, requests=10)
            return {} if "" in answers else answers

        answers = wait_until(
            all_answered,
            timeout=timeout,
            interval=0.5,
            what=f"http://{topo.vip}/ to answer",
        )
    except WaitTimeout as exc:
        print(f"lab is up but not serving: {exc}", file=sys.stderr)
        print("see `make logs`", file=sys.stderr)
        return 1
    holders = sorted(masters(lab))
    holder = ", ".join(holders)
    macs = ", ".join(str(lab.mac(h, topo.front_net)) for h in holders)
    client, vip = topo.client.name, topo.vip
    print(f"\nvipkeeper lab ({lab.project}) is serving http://{vip}/")
    print(f"  directors run: {lab.director_daemon()}")
    print(f"  VIP {vip} held by: {holder} (MAC {macs})")
    print(
        "  real servers answering: "
        + ", ".join(f"{s} ({n}/10)" for s, n in sorted(answers.items()))
    )
    if topo.prometheus_url is not None:
        print(
            f"  Prometheus: {topo.prometheus_url}/ (scrapes {', '.join(topo.director_names)}"
            f" every {SCRAPE_INTERVAL:g} s)"
        )
    print("\nTry next (from this directory):")
    requests = f"for i in 1 2 3 4; do curl -s http://{vip}/; done"
    print(f"  docker compose exec {client} sh -c '{requests}'")
    print(f"  docker compose kill {holder}     # then run the line above again")
    print(
        f"  docker compose exec {client} arping -c 3 -I {topo.front_if(client)} {vip}"
        "   # who answers ARP"
    )
    print("  make watch    # the live view;  make fault: faults to inject;  make exercise")
    return 0


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        params[key.lower()] = int(value) if value.isdigit() else value
    return params


def list_faults() -> int:
    from harness.faults import FAULTS

    width = max(len(name) for name in FAULTS)
    for name, cls in FAULTS.items():
        print(f"{name:<{width}}  {cls.summary}")
    print("\nmake fault NAME=<fault> [NODE=<service>] [PRIORITY=<n>];  make heal undoes them all")
    return 0


def fault(lab: Lab, name: str, node: str | None, params: dict[str, Any]) -> int:
    from harness.faults import FaultError, make, remember

    try:
        applied = make(lab, name, node, **params)
        applied.apply()
    except FaultError as exc:
        print(f"fault: {exc}", file=sys.stderr)
        return 2
    remember(lab, applied)
    print(f"applied: {applied.label()}   (make heal undoes it)")
    settle = applied.settle_time()
    if settle:  # wait the protocol's bound for its effect, then say where the VIP is
        deadline = time.monotonic() + settle
        wait_until(lambda: time.monotonic() >= deadline, timeout=settle + 1, what="the bound")
    holders = ", ".join(sorted(masters(lab))) or "nobody"
    print(f"VIP {lab.topology.vip} held by: {holders}")
    return 0


def heal(lab: Lab) -> int:
    from harness import checks
    from harness.faults import heal_all
    from harness.restore import restore

    failed = False
    for what, error in heal_all(lab):
        print(f"{what}: {'FAILED ' + error if error else 'done'}")
        failed = failed or error is not None
    try:
        restore(lab, flush_client=False)
    except WaitTimeout as exc:
        print(f"the lab did not return to its start state: {exc}", file=sys.stderr)
        failed = True
    ok = checks.report("start state:", checks.run(lab, checks.start_state()), sys.stdout)
    return 0 if ok and not failed else 1


def start_state(lab: Lab) -> int:
    from harness import checks

    ok = checks.report("start state:", checks.run(lab, checks.start_state()), sys.stdout)
    return 0 if ok else 1


def timeline(lab: Lab, name: str, node: str | None, params: dict[str, Any]) -> int:
    from harness.recording import record_fault

    json_path, png_path, summary = record_fault(lab, name, node, params)
    print(summary)
    print(f"timeline: {png_path}  (data: {json_path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n")[0])
    parser.add_argument("--project", default=None, help="Compose project (default: compose.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up-report")
    up.add_argument("--timeout", type=float, default=90.0)
    sub.add_parser("faults")
    for command in ("fault", "timeline"):
        p = sub.add_parser(command)
        p.add_argument("name")
        p.add_argument("node", nargs="?", default=None)
        p.add_argument("params", nargs="*", metavar="KEY=VALUE")
    sub.add_parser("heal")
    sub.add_parser("start-state")
    watch = sub.add_parser("watch")
    watch.add_argument("--refresh", type=float, default=None, help="screen refreshes per second")
    watch.add_argument("--seconds", type=float, default=None, help="stop after this long")
    sub.add_parser("exercises")
    check = sub.add_parser("check")
    check.add_argument("number", type=int)
    args = parser.parse_args(argv)

    if args.command == "faults":
        return list_faults()
    if args.command == "exercises":
        from harness.exercises import list_exercises

        return list_exercises(sys.stdout)
    # A NODE given as KEY=VALUE (make passes empty NODE as nothing) belongs to the params.
    if args.command in ("fault", "timeline") and args.node and "=" in args.node:
        args.params.insert(0, args.node)
        args.node = None
    lab = Lab(args.project)
    if args.command == "up-report":
        return up_report(lab, args.timeout)
    if args.command == "fault":
        return fault(lab, args.name, args.node, _params(args.params))
    if args.command == "timeline":
        return timeline(lab, args.name, args.node, _params(args.params))
    if args.command == "heal":
        return heal(lab)
    if args.command == "start-state":
        return start_state(lab)
    if args.command == "watch":
        from harness.watch import REFRESH, run_watch

        return run_watch(lab, refresh=args.refresh or REFRESH, seconds=args.seconds)
    if args.command == "check":
        from harness.exercises import check_exercise

        return check_exercise(lab, args.number, sys.stdout)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
