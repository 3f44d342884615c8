"""The floor under a Python VRRP Backup: what a receiver that does (almost) nothing costs.

Two routers on a bridge (bench/_netns.py): r1 runs keepalived as Master (VRRPv3, one instance,
`--advert-int`, 0.01 s by default), r2 runs, one after the other, for `--window` seconds each:

- keepalived as Backup;
- vipkeeper as Backup (its autopilot thread carries the steady Backup);
- vipkeeper as Backup with `--no-autopilot` (the event loop reads the socket lazily);
- a minimal asyncio program that joins 224.0.0.18 on a raw protocol-112 socket and reads every
  packet as it arrives (no decoding, no state): one asyncio wake-up per advertisement;
- a minimal Python loop that sleeps as long as a Backup's Master_Down_Interval less one advert
  interval, then reads whatever arrived: the fewest wake-ups any Backup can do, with nothing
  but a sleep and the reads in each.

CPU is the sum_exec_runtime of /proc/PID/task/*/schedstat (nanoseconds, not ticks, every
thread) over the window, as % of one core, summed over the namespace's processes; wake-ups are
the voluntary context switches of the same threads. The two minimal receivers bound from below
what a Python Backup can cost on this machine; the ratios are to keepalived in the same run.

    sudo .venv/bin/python bench/receive_floor.py [--advert-int 0.01] [--window 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _netns import (
    Lab,
    cpu_seconds,
    keepalived_conf,
    machine_summary,
    start_daemon,
    vips_on,
    wake_ups,
)
from vipkeeper.testing.waits import wait_until

MINIMAL_ASYNCIO = """
import asyncio, socket, sys
async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    group = socket.inet_aton("224.0.0.18") + socket.inet_aton(sys.argv[1])
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
    sock.setblocking(False)
    def drain():
        while True:
            try:
                sock.recv(4200)
            except BlockingIOError:
                return
    asyncio.get_running_loop().add_reader(sock, drain)
    await asyncio.Event().wait()
asyncio.run(main())
"""

MINIMAL_TIMED_DRAIN = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
group = socket.inet_aton("224.0.0.18") + socket.inet_aton(sys.argv[1])
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
sock.setblocking(False)
nap = float(sys.argv[2])
while True:
    time.sleep(nap)
    try:
        while True:
            sock.recv(4200)
    except BlockingIOError:
        pass
"""

RECEIVERS = (
    "keepalived",
    "vipkeeper",
    "vipkeeper --no-autopilot",
    "minimal asyncio reader",
    "minimal Python timed drain",
)


def measure(ns: str, window: float) -> tuple[float, float]:
    pids = Lab.namespace_pids(ns)
    cpu_before, wakes_before = cpu_seconds(pids), wake_ups(pids)
    time.sleep(window)  # the measured window itself, not a wait for a condition
    cpu = (cpu_seconds(pids) - cpu_before) / window * 100
    return cpu, (wake_ups(pids) - wakes_before) / window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--advert-int", type=float, default=0.01)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all receivers")
    args = parser.parse_args()
    vip = "10.0.0.50/24"
    # The Backup's Master_Down_Interval (priority 100, RFC 9568 §6.1) less one interval: the
    # typical gap between two lazy reads.
    skew = (256 - 100) / 256 * args.advert_int
    nap = 3 * args.advert_int + skew - args.advert_int
    readings: dict[str, list[tuple[float, float]]] = {kind: [] for kind in RECEIVERS}
    print(f"# {machine_summary()}", file=sys.stderr)
    with Lab() as lab:
        r1 = lab.add_host("r1", ["10.0.0.1/24"])
        r2 = lab.add_host("r2", ["10.0.0.2/24"])
        master_conf = keepalived_conf(
            router_id="r1", priority=150, version=3, advert_int=args.advert_int, vips=[(51, vip)]
        )
        backup_conf = master_conf.replace("priority 150", "priority 100").replace("r1", "r2")
        master = start_daemon(lab, r1, "keepalived", master_conf)
        wait_until(lambda: vip in vips_on(r1), timeout=30, what="r1 holds the VIP")
        for _round in range(args.rounds):
            for kind in RECEIVERS:
                if kind.startswith("minimal"):
                    script = MINIMAL_ASYNCIO if "asyncio" in kind else MINIMAL_TIMED_DRAIN
                    process = lab.popen(r2, sys.executable, "-c", script, "10.0.0.2", str(nap))
                    stop = process.kill
                else:
                    daemon_kind, *extra = kind.split()
                    daemon = start_daemon(lab, r2, daemon_kind, backup_conf, extra_args=extra)
                    stop = daemon.stop  # type: ignore[assignment]
                time.sleep(args.settle)  # let start-up costs pass before the window
                assert vip not in vips_on(r2), f"{kind} took the VIP: not a Backup"
                readings[kind].append(measure(r2.ns, args.window))
                stop()
                lab.kill_all(r2)
        master.stop()
    keepalived = statistics.median(cpu for cpu, _ in readings["keepalived"])
    print(
        f"Backup, one VRRPv3 instance at advert_int {args.advert_int:g} s, {args.window:g} s "
        f"windows, {args.rounds} round(s), median (schedstat, every thread):"
    )
    print(f"  {'receiver':28} {'% of a core':>12} {'wake-ups/s':>11} {'ratio to keepalived':>20}")
    for kind, values in readings.items():
        cpu = statistics.median(c for c, _ in values)
        wakes = statistics.median(w for _, w in values)
        runs = ", ".join(f"{c:.2f}" for c, _ in values)
        print(f"  {kind:28} {cpu:12.2f} {wakes:11.1f} {cpu / keepalived:20.2f}   ({runs})")


if __name__ == "__main__":
    main()
