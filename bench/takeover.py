"""Takeover latency: how long after its Master_Down_Timer is due a Backup announces the VIP.

The failover gap of `bench/failover.py` is dominated by the phase of the failure within the
advertisement interval and quantised by the 10 ms ping, so it cannot resolve a difference of a
millisecond or two between the daemons. This measures the part that is the daemon's own.

Routers r1 (priority 150) and r2 (priority 100) and a client on one bridge, one instance
(VRID 51, VIP 10.0.0.50/24), both routers of the same daemon. Once r1 is Master, the client
captures VRRP and ARP (tcpdump); r1 then fails hard (`Lab.hard_fail`). From the capture:

    latency = first gratuitous ARP for the VIP from r2
              - (last advertisement from r1 + Master_Down_Interval)

Master_Down_Interval is r2's (priority 100) for the run's version and interval, from the
core's `timing` (r1's adverts carry the configured interval). Both timestamps come from the
client's capture, so the clocks agree. Runs alternate between the daemons; the median per cell
is printed.

    sudo .venv/bin/python bench/takeover.py [--runs 5]

Root only; all traffic stays inside the lab's namespaces, which are removed after every run.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time

from scapy.layers.inet import IP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from _netns import DAEMONS, Lab, failover_lab, machine_summary, vips_on
from vipkeeper.core import timing
from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL
from vipkeeper.testing.waits import wait_until

VIP = "10.0.0.50"
VIP_CIDR = f"{VIP}/24"
BACKUP_PRIORITY = 100
SETTINGS = ((2, 1.0), (3, 0.1), (3, 0.01))


def one_run(daemon: str, version: int, advert_int: float) -> float:
    """Seconds from the Backup's Master_Down deadline to its first gratuitous ARP."""
    with Lab() as lab:
        r1, r2, client = failover_lab(
            lab, daemon, version=version, advert_int=advert_int, vip_cidr=VIP_CIDR
        )
        pcap = lab.workdir / "client.pcap"
        capture = lab.popen(
            client,
            "tcpdump", "-U", "-n", "-i", client.ifname, "-w", str(pcap),
            "(vrrp and src host 10.0.0.1) or arp",
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Let r2 hear r1 for a while (v3: learn its interval) with the capture running.
        time.sleep(1.0 + 3 * advert_int)  # a fixed lead-in, not a wait for a condition
        lab.hard_fail(r1)
        wait_until(
            lambda: VIP_CIDR in vips_on(r2), timeout=30, what=f"{daemon}: r2 holds {VIP_CIDR}"
        )
        time.sleep(1.0)  # let the capture write out r2's announcements before stopping it
        capture.send_signal(signal.SIGINT)
        capture.wait(timeout=10)
        packets = rdpcap(str(pcap))
    adverts = [
        float(p.time)
        for p in packets
        if IP in p and p[IP].proto == VRRP_PROTOCOL and p[IP].src == "10.0.0.1"
    ]
    last_advert = max(adverts)
    deadline = last_advert + timing.master_down_interval(
        version=version, priority=BACKUP_PRIORITY, master_adver_interval=advert_int
    )
    # r1 may repeat its own gratuitous ARPs (garp_master_delay); r2's come after the deadline.
    announcements = [
        float(p.time)
        for p in packets
        if ARP in p and p[ARP].psrc == VIP and float(p.time) > last_advert + 1.5 * advert_int
    ]
    if not announcements:
        raise RuntimeError(f"{daemon}: no gratuitous ARP from r2 in the capture")
    return min(announcements) - deadline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"# {machine_summary()}", file=sys.stderr)
    print("setting              keepalived median ms [min-max]    vipkeeper median ms [min-max]")
    for version, advert_int in SETTINGS:
        results: dict[str, list[float]] = {daemon: [] for daemon in DAEMONS}
        for _ in range(args.runs):
            for daemon in DAEMONS:
                results[daemon].append(1000 * one_run(daemon, version, advert_int))
        cells = [
            f"{statistics.median(v):7.2f} [{min(v):.2f}-{max(v):.2f}]" for v in results.values()
        ]
        label = f"v{version} advert_int {advert_int:g}"
        print(f"{label:20} {cells[0]:32} {cells[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
