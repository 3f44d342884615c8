"""255 VRRP instances on one interface at run time, keepalived and vipkeeper in the same run.

vipkeeper.testing.many's router (VRID 1 to 255 on eth0, one VIP each, v3, advert_int 1) alone on
a LAN with a listener. Per run and daemon, in a fresh lab: the time from exec to all 255 VIPs
on the interface (every instance Master; this includes Master_Down_Interval, 3.6 s), then over
--seconds the daemon's CPU (every process and thread), its RSS, and the adverts the listener
heard per VRID. Runs alternate between the daemons; medians over --runs.

    sudo .venv/bin/python bench/many_instances.py [--runs 3] [--seconds 10] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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
    rss_kib,
    start_daemon,
    vips_on,
)
from vipkeeper.testing.many import INSTANCES, LISTENER, config, parse_counts, vip
from vipkeeper.testing.waits import wait_until

SUBNET = 0


def one_run(daemon: str, seconds: float) -> dict[str, Any]:
    with Lab() as lab:
        router = lab.add_host("r1", [f"10.{SUBNET}.0.1/16"])
        listener_host = lab.add_host("listen", [f"10.{SUBNET}.0.2/16"])
        expected = {vip(SUBNET, vrid) for vrid in range(1, INSTANCES + 1)}
        exec_at = time.monotonic()
        started = start_daemon(lab, router, daemon, config(SUBNET))
        wait_until(
            lambda: expected <= vips_on(router),
            timeout=300,
            what=f"{daemon}: 255 VIPs",
            interval=0.02,
        )
        all_master = time.monotonic() - exec_at
        listener = lab.popen(
            listener_host, sys.executable, "-c", LISTENER, f"10.{SUBNET}.0.2", f"{seconds:g}",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        pids = started.pids()
        cpu_before = cpu_seconds(pids)
        out, _ = listener.communicate(timeout=seconds + 60)
        cpu = (cpu_seconds(pids) - cpu_before) / seconds
        counts = parse_counts(out.decode())
        result = {
            "daemon": daemon,
            "all_master": all_master,
            "cpu": cpu,
            "rss_kib": rss_kib(pids),
            "vrids_heard": len(counts),
            "adverts_per_second": sum(counts.values()) / seconds,
        }
        started.stop()
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for run in range(args.runs):
        for daemon in DAEMONS:
            result = one_run(daemon, args.seconds)
            results.append(result)
            print(f"run {run} {daemon}: {result}", file=sys.stderr, flush=True)

    def median(daemon: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["daemon"] == daemon)

    rows = [
        ("exec to all 255 Master with their VIPs (s)", "all_master", "{:.2f}"),
        ("CPU while running (% of one CPU)", "cpu", "{:.1%}"),
        ("RSS (MiB)", "rss_kib", "{:.1f}"),
        ("VRIDs heard on the wire", "vrids_heard", "{:.0f}"),
        ("adverts per second heard", "adverts_per_second", "{:.0f}"),
    ]
    print(f"# {machine_summary()}")
    print(f"# {INSTANCES} instances, medians of {args.runs} runs, {args.seconds:g} s measured")
    lines = ["| | keepalived | vipkeeper | ratio vk/ka |", "|---|---|---|---|"]
    for label, key, form in rows:
        ka, vk = median("keepalived", key), median("vipkeeper", key)
        if key == "rss_kib":
            ka, vk = ka / 1024, vk / 1024
        ratio = f"{vk / ka:.2f}" if ka else "-"
        lines.append(f"| {label} | {form.format(ka)} | {form.format(vk)} | {ratio} |")
    text = "\n".join(lines)
    print(text if args.markdown else text.replace("|", " "))
    heard_all = all(r["vrids_heard"] == INSTANCES for r in results if r["daemon"] == "vipkeeper")
    return 0 if heard_all else 1


if __name__ == "__main__":
    sys.exit(main())
