"""The floor under a Python VRRP Backup: what a receiver that does nothing costs.

Two routers on a bridge (bench/_netns.py): r1 runs keepalived as Master (VRRPv3, one instance,
`--advert-int`, 0.01 s by default), r2 runs, one after the other, for `--window` seconds each:

- keepalived as Backup;
- vipkeeper as Backup;
- a minimal asyncio program that only joins 224.0.0.18 on a raw protocol-112 socket and reads
  every packet (no decoding, no state): the cost of one asyncio wake-up per advertisement.

CPU is the sum_exec_runtime of /proc/PID/task/*/schedstat (nanoseconds, not ticks, every
thread) over the window, as % of one core, summed over the namespace's processes. The minimal
receiver bounds from below what any asyncio-based Backup can cost on this machine.

    sudo .venv/bin/python bench/receive_floor.py [--advert-int 0.01] [--window 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _netns import (
    Lab,
    cpu_seconds,
    keepalived_conf,
    namespace_pids,
    start_daemon,
    vips_on,
    wait_until,
)

MINIMAL_RECEIVER = """
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


def measure(ns: str, window: float) -> float:
    pids = namespace_pids(ns)
    before = cpu_seconds(pids)
    time.sleep(window)  # the measured window itself, not a wait for a condition
    return (cpu_seconds(pids) - before) / window * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--advert-int", type=float, default=0.01)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    vip = "10.0.0.50/24"
    results: dict[str, float] = {}
    with Lab() as lab:
        r1 = lab.add_host("r1", ["10.0.0.1/24"])
        r2 = lab.add_host("r2", ["10.0.0.2/24"])
        master_conf = keepalived_conf(
            router_id="r1", priority=150, version=3, advert_int=args.advert_int, vips=[(51, vip)]
        )
        backup_conf = master_conf.replace("priority 150", "priority 100").replace("r1", "r2")
        master = start_daemon(lab, r1, "keepalived", master_conf)
        wait_until(lambda: vip in vips_on(r1), 30, "r1 holds the VIP")
        for kind in ("keepalived", "vipkeeper", "minimal asyncio receiver"):
            if kind == "minimal asyncio receiver":
                process = lab.popen(r2, sys.executable, "-c", MINIMAL_RECEIVER, "10.0.0.2")
                stop = process.kill
            else:
                daemon = start_daemon(lab, r2, kind, backup_conf)
                stop = daemon.stop  # type: ignore[assignment]
            time.sleep(args.settle)  # let start-up costs pass before the window
            assert vip not in vips_on(r2), f"{kind} took the VIP: not a Backup"
            results[kind] = measure(r2.ns, args.window)
            stop()
        master.stop()
    floor = results["minimal asyncio receiver"]
    print(f"Backup CPU, one VRRPv3 instance at advert_int {args.advert_int:g} s, "
          f"{args.window:g} s window (schedstat):")  # fmt: skip
    for kind, value in results.items():
        print(f"  {kind:26} {value:6.2f} % of a core")
    print(f"  vipkeeper / keepalived     {results['vipkeeper'] / results['keepalived']:6.2f}")
    print(f"  floor / keepalived         {floor / results['keepalived']:6.2f}")


if __name__ == "__main__":
    main()
