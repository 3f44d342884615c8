"""Failover gap: keepalived and vipkeeper side by side, same namespaces, same settings.

Each run is a fresh lab: routers r1 (priority 150) and r2 (priority 100) and a client on one
bridge, one VRRP instance (VRID 51, VIP 10.0.0.50/24), both routers starting as BACKUP. Once
r1 holds the VIP (and a few advertisements have reached r2), the client pings the VIP every
10 ms (`ping -D -i 0.01`, as root in its namespace, each reply time-stamped by ping); then r1
fails hard: every process in its namespace is frozen (SIGSTOP), its bridge port is taken down
(carrier lost) and the processes are SIGKILLed (`Lab.hard_fail`: without the freeze,
keepalived's VRRP child catches the SIGTERM its parent's death sends it and hands over
gracefully with priority 0, which is not the failure measured here). The
figure is the longest gap between consecutive ping replies in the whole ping run. The run ends
when r2 holds the VIP and 0.5 s of replies followed the gap.

Cells: daemon (keepalived, vipkeeper) x setting (v2 advert_int 1, v3 advert_int 0.1, v3
advert_int 0.01). Runs are interleaved (run 1 of every cell, then run 2, ...) so slow drift of
the machine falls on both daemons alike. Per cell the median over the runs is reported, and per
setting the ratio vipkeeper / keepalived of the medians (target: <= 1.0).

    sudo .venv/bin/python bench/failover.py --runs 5 [--markdown] [--json FILE]

Root only; all traffic stays inside the lab's namespaces, which are removed after every run.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _netns import DAEMONS, Lab, failover_lab, machine_summary, vips_on
from vipkeeper.testing.waits import wait_until


@dataclass(frozen=True)
class Setting:
    label: str
    version: int
    advert_int: float


SETTINGS = (
    Setting("v2 advert_int 1", 2, 1.0),
    Setting("v3 advert_int 0.1", 3, 0.1),
    Setting("v3 advert_int 0.01", 3, 0.01),
)
VIP = "10.0.0.50"
VIP_CIDR = f"{VIP}/24"
VRID = 51
PING_INTERVAL = 0.01
REPLIES_BEFORE = 50  # 0.5 s of steady replies before the failure
REPLIES_AFTER = 50  # and after the gap
_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


@dataclass(frozen=True)
class Result:
    daemon: str
    setting: str
    run: int
    gap: float  # longest gap between consecutive replies, seconds
    gap_start_after_failure: float  # last reply before the gap, relative to the kill (<= 0)
    replies: int


def reply_times(path: Path) -> list[float]:
    times = []
    for line in path.read_text(errors="replace").splitlines():
        match = _REPLY.match(line)
        if match:
            times.append(float(match.group(1)))
    return times


def longest_gap(times: list[float]) -> tuple[float, int]:
    """(gap, index of the reply that ends it); (0.0, 0) with fewer than two replies."""
    best, where = 0.0, 0
    for index in range(1, len(times)):
        gap = times[index] - times[index - 1]
        if gap > best:
            best, where = gap, index
    return best, where


def one_run(daemon: str, setting: Setting, run: int) -> Result:
    with Lab() as lab:
        r1, r2, client = failover_lab(
            lab,
            daemon,
            version=setting.version,
            advert_int=setting.advert_int,
            vip_cidr=VIP_CIDR,
            vrid=VRID,
        )
        # Let r2 hear a few advertisements from the new Master (v3: learn its interval).
        time.sleep(max(0.5, 3 * setting.advert_int))

        ping_log = lab.workdir / "ping.log"
        with ping_log.open("wb") as out:
            ping = lab.popen(
                client, "ping", "-D", "-n", "-i", f"{PING_INTERVAL}", "-W", "1", VIP,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(
            lambda: len(reply_times(ping_log)) >= REPLIES_BEFORE,
            timeout=10,
            what=f"{REPLIES_BEFORE} ping replies from {VIP} before the failure",
            interval=0.02,
        )
        if VIP_CIDR in vips_on(r2):
            raise RuntimeError(f"{daemon}: r2 took the VIP before the failure")

        failed_at = lab.hard_fail(r1, lab.namespace_pids(r1))

        def recovered() -> bool:
            times = reply_times(ping_log)
            _gap, end = longest_gap(times)
            return times[-1] > failed_at and len(times) - end >= REPLIES_AFTER

        wait_until(
            lambda: VIP_CIDR in vips_on(r2), timeout=30, what=f"{daemon}: r2 takes over {VIP_CIDR}"
        )
        wait_until(recovered, timeout=30, what="ping replies resume through r2", interval=0.05)
        ping.send_signal(signal.SIGINT)
        ping.wait(10)
        times = reply_times(ping_log)
        gap, end = longest_gap(times)
        return Result(
            daemon=daemon,
            setting=setting.label,
            run=run,
            gap=gap,
            gap_start_after_failure=times[end - 1] - failed_at,
            replies=len(times),
        )


def summarize(
    results: list[Result], settings: list[Setting], daemons: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for setting in settings:
        row: dict[str, Any] = {"setting": setting.label}
        for daemon in daemons:
            gaps = [r.gap for r in results if r.daemon == daemon and r.setting == setting.label]
            row[daemon] = {
                "median": statistics.median(gaps) if gaps else None,
                "min": min(gaps, default=None),
                "max": max(gaps, default=None),
                "runs": len(gaps),
            }
        k, v = row.get("keepalived", {}).get("median"), row.get("vipkeeper", {}).get("median")
        row["ratio"] = v / k if k and v is not None else None
        rows.append(row)
    return rows


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_table(rows: list[dict[str, Any]], markdown: bool) -> None:
    header = [
        "setting",
        "keepalived median gap (s) [min-max]",
        "vipkeeper median gap (s) [min-max]",
        "ratio vk/ka",
        "target <= 1.0",
    ]
    lines = []
    for row in rows:
        cells = [row["setting"]]
        for daemon in DAEMONS:
            cell = row.get(daemon)
            if cell is None or cell["median"] is None:
                cells.append("-")
            else:
                cells.append(
                    f"{_seconds(cell['median'])} [{_seconds(cell['min'])}-"
                    f"{_seconds(cell['max'])}] (n={cell['runs']})"
                )
        ratio = row["ratio"]
        cells.append("-" if ratio is None else f"{ratio:.2f}")
        cells.append("-" if ratio is None else ("met" if ratio <= 1.0 else "not met"))
        lines.append(cells)
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    for cells in [header, *lines]:
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per cell (default 5)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: print the table of a run saved with --json",
    )
    parser.add_argument(
        "--daemon", action="append", choices=DAEMONS, help="only this daemon (repeatable)"
    )
    parser.add_argument(
        "--setting",
        action="append",
        choices=[s.label.replace(" ", "-") for s in SETTINGS],
        help="only this setting, e.g. v3-advert_int-0.1 (repeatable)",
    )
    args = parser.parse_args()
    daemons = args.daemon or list(DAEMONS)
    settings = [
        s for s in SETTINGS if not args.setting or s.label.replace(" ", "-") in args.setting
    ]
    if args.from_json:
        saved = [Result(**r) for r in json.loads(args.from_json.read_text())["runs"]]
        print_table(summarize(saved, settings, daemons), args.markdown)
        return 0
    print(f"# {machine_summary()}", file=sys.stderr)
    results: list[Result] = []
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        for setting in settings:
            for daemon in daemons:
                result = one_run(daemon, setting, run)
                results.append(result)
                print(
                    f"run {run} {setting.label:<18} {daemon:<10} gap {result.gap:.3f} s "
                    f"(last reply {result.gap_start_after_failure:+.3f} s from the failure)",
                    file=sys.stderr,
                    flush=True,
                )
    rows = summarize(results, settings, daemons)
    print(f"# {args.runs} runs per cell, {time.monotonic() - started:.0f} s", file=sys.stderr)
    print_table(rows, args.markdown)
    if args.json:
        args.json.write_text(
            json.dumps({"runs": [asdict(r) for r in results], "summary": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
