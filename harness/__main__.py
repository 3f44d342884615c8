"""python -m harness up-report [--timeout S]: wait until the lab's VIP answers HTTP (from the
client), then print who holds the VIP, which real servers answer, and what to try next."""

from __future__ import annotations

import argparse
import sys

from harness.lab import Lab
from harness.probes import masters, servers_answering
from harness.topology import CLIENT, DIRECTORS, FRONT_NET, PROMETHEUS_URL, SCRAPE_INTERVAL, VIP
from harness.waits import LabTimeout, wait_until


def up_report(lab: Lab, timeout: float) -> int:
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
            what=f"http://{VIP}/ to answer",
        )
    except LabTimeout as exc:
        print(f"lab is up but not serving: {exc}", file=sys.stderr)
        print("see `make logs`", file=sys.stderr)
        return 1
    holders = sorted(masters(lab))
    holder = ", ".join(holders)
    macs = ", ".join(str(lab.mac(h, FRONT_NET)) for h in holders)
    print(f"\nvipkeeper lab ({lab.project}) is serving http://{VIP}/")
    print(f"  directors run: {lab.director_daemon()}")
    print(f"  VIP {VIP} held by: {holder} (MAC {macs})")
    print(
        "  real servers answering: "
        + ", ".join(f"{s} ({n}/10)" for s, n in sorted(answers.items()))
    )
    print(
        f"  Prometheus: {PROMETHEUS_URL}/ (scrapes {', '.join(DIRECTORS)} every"
        f" {SCRAPE_INTERVAL:g} s)"
    )
    print("\nTry next (from this directory):")
    print(
        f"  docker compose exec {CLIENT} sh -c 'for i in 1 2 3 4; do curl -s http://{VIP}/; done'"
    )
    print(f"  docker compose kill {holder}     # then run the line above again")
    print(f"  docker compose exec {CLIENT} arping -c 3 -I eth0 {VIP}   # who answers ARP")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m harness")
    parser.add_argument("command", choices=["up-report"])
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--project", default=None)
    args = parser.parse_args()
    lab = Lab(args.project) if args.project else Lab()
    return up_report(lab, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
