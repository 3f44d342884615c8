"""Start-up: exec to "in the election", keepalived and vipkeeper side by side in the same run.

Each run is a fresh lab: one router and a listener on one bridge. The listener's raw socket
(IPPROTO 112, in its own namespace) waits for VRRP; then the router's daemon is started (the
wall-clock time just before `Popen` is its exec time) with one v3 instance, advert_int 0.1,
priority 254, state BACKUP. Alone on the LAN, it enters BACKUP as soon as its sockets are open
and sends its first advert one Master_Down_Interval later (3 x 0.1 + 2/256 x 0.1 = 0.3008 s, the
same for both daemons). So:

    first advert on the wire - exec             what the listener sees (kernel timestamp)
    ... - Master_Down_Interval                  exec to "in the election" (sockets open, BACKUP)

vipkeeper's own log gives a cross-check (`INITIALIZE -> BACKUP` at its millisecond timestamp).
Runs alternate between the daemons, so the machine's drift falls on both alike; the medians are
compared as a ratio and a difference (goal: within 100 ms of keepalived).

    sudo .venv/bin/python bench/startup.py --runs 10 [--markdown] [--json FILE]
         [--config vrrp|lvs]   vrrp: one instance; lvs: plus a virtual server with two real
                               servers and TCP_CHECKs (nftables data plane)

vipkeeper's modules are compiled to bytecode first (as an installed wheel's are). Root only; all
traffic stays inside the lab's namespaces, which are removed after every run.
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _netns import DAEMONS, Lab, machine_summary, start_daemon
from vipkeeper.core import timing
from vipkeeper.testing.daemons import log_time

ADVERT_INT = 0.1
PRIORITY = 254
MASTER_DOWN = timing.master_down_interval(
    version=3, priority=PRIORITY, master_adver_interval=ADVERT_INT
)
SUBNET = "10.0.0"


def config(kind: str) -> str:
    text = (
        "global_defs {\n    router_id r1\n}\n"
        "vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n    version 3\n"
        f"    virtual_router_id 51\n    priority {PRIORITY}\n    advert_int {ADVERT_INT:g}\n"
        f"    virtual_ipaddress {{\n        {SUBNET}.50/24\n    }}\n}}\n"
    )
    if kind == "lvs":
        text += (
            "global_defs {\n    lvs_backend nftables\n}\n"
            f"virtual_server {SUBNET}.50 80 {{\n    delay_loop 5\n    lb_algo rr\n"
            "    lb_kind DR\n    protocol TCP\n"
            + "".join(
                f"    real_server {SUBNET}.{host} 80 {{\n        TCP_CHECK {{\n"
                "            connect_timeout 1\n        }\n    }\n"
                for host in (11, 12)
            )
            + "}\n"
        )
    return text


def _log_backup_time(log: str) -> float | None:
    for line in log.splitlines():
        if "INITIALIZE -> BACKUP" in line and line.startswith("{"):
            return log_time(json.loads(line)["ts"])
    return None


def one_run(daemon: str, kind: str) -> dict[str, Any]:
    with Lab() as lab:
        router = lab.add_host("r1", [f"{SUBNET}.1/24"])
        listener_host = lab.add_host("listen", [f"{SUBNET}.2/24"])
        listener = lab.popen(
            listener_host, sys.executable, "-m", "vipkeeper.testing.adverts", f"{SUBNET}.2",
            "--count", "1", "--timeout", "30", stdout=subprocess.PIPE,
        )  # fmt: skip
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != b"ready":
            raise RuntimeError("the listener did not start")
        exec_at = time.time()
        started = start_daemon(lab, router, daemon, config(kind))
        line = listener.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"{daemon}: no advert within 30 s\n{started.log()}")
        first_advert = float(line.split()[0]) - exec_at
        result: dict[str, Any] = {
            "daemon": daemon,
            "first_advert": first_advert,
            "in_election": first_advert - MASTER_DOWN,
        }
        if daemon == "vipkeeper":
            logged = _log_backup_time(started.log())
            result["logged_backup"] = None if logged is None else logged - exec_at
        started.stop()
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--config", choices=("vrrp", "lvs"), default="vrrp")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import vipkeeper

    compileall.compile_dir(str(Path(vipkeeper.__file__).parent), quiet=1)
    results: list[dict[str, Any]] = []
    for run in range(args.runs):
        for daemon in DAEMONS:
            result = one_run(daemon, args.config)
            result["run"] = run
            results.append(result)
            print(f"run {run} {daemon}: in the election {result['in_election'] * 1000:.0f} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
    medians = {
        d: statistics.median(r["in_election"] for r in results if r["daemon"] == d) for d in DAEMONS
    }
    advert = {
        d: statistics.median(r["first_advert"] for r in results if r["daemon"] == d)
        for d in DAEMONS
    }
    logged = [r["logged_backup"] for r in results if r.get("logged_backup") is not None]
    print(f"# {machine_summary()}")
    print(f"# config {args.config}, {args.runs} runs per daemon, Master_Down_Interval "
          f"{MASTER_DOWN * 1000:.1f} ms")  # fmt: skip
    rows = [
        ("exec to first advert, median (ms)", {d: advert[d] * 1000 for d in DAEMONS}),
        ("exec to in the election, median (ms)", {d: medians[d] * 1000 for d in DAEMONS}),
    ]
    ratio = medians["vipkeeper"] / medians["keepalived"] if medians["keepalived"] > 0 else 0
    difference = (medians["vipkeeper"] - medians["keepalived"]) * 1000
    if args.markdown:
        print("| | keepalived | vipkeeper |\n|---|---|---|")
        for label, values in rows:
            print(f"| {label} | {values['keepalived']:.0f} | {values['vipkeeper']:.0f} |")
    else:
        for label, values in rows:
            print(f"{label:<40} keepalived {values['keepalived']:7.0f}   "
                  f"vipkeeper {values['vipkeeper']:7.0f}")  # fmt: skip
    print(
        f"vipkeeper / keepalived: {ratio:.2f}x, difference {difference:+.0f} ms (goal <= +100 ms)"
    )
    if logged:
        print(f"vipkeeper's own log, exec to INITIALIZE -> BACKUP, median "
              f"{statistics.median(logged) * 1000:.0f} ms")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"config": args.config, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
