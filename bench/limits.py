"""Configurations at and past the limits: load time and peak memory, or the refusal.

Each case writes one generated keepalived.conf and runs `vipkeeper check -f` on it in a fresh
process (GNU time gives the wall time and the peak RSS); keepalived reads the same file with
`keepalived --config-test` as the baseline where it can. A case passes when the load finishes
within its time limit, either accepted or refused with a located error; nothing may hang.

    .venv/bin/python bench/limits.py [--markdown] [--only NAME]

Cases: 255 VRRP instances on one interface, 1,000 VIPs on one instance, 1,000 virtual
servers, 10,000 real servers (100 virtual servers x 100), braces nested 100,000 deep, an
include that includes itself, a glob that expands to 1,024 brace alternatives, a 100 MB file.
No daemon is started and nothing touches the network.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIPKEEPER = ROOT / ".venv" / "bin" / "vipkeeper"
KEEPALIVED = "/usr/sbin/keepalived"
TIME_LIMIT = 120.0  # seconds per load, after which the case counts as a hang


def instances(count: int) -> str:
    return "".join(
        f"vrrp_instance VI_{n} {{\n    state BACKUP\n    interface eth0\n"
        f"    virtual_router_id {n}\n    priority 100\n    advert_int 1\n"
        f"    virtual_ipaddress {{\n        10.{n // 250}.{n % 250}.1/32\n    }}\n}}\n"
        for n in range(1, count + 1)
    )


def vips(count: int) -> str:
    addresses = "".join(f"        10.1.{n // 250}.{n % 250 + 1}/32\n" for n in range(count))
    return (
        "vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 1\n"
        f"    priority 100\n    advert_int 1\n    virtual_ipaddress {{\n{addresses}    }}\n}}\n"
    )


def virtual_servers(count: int, reals: int) -> str:
    blocks = []
    for n in range(count):
        servers = "".join(
            f"    real_server 192.168.{r // 250}.{r % 250 + 1} 80 {{\n"
            "        TCP_CHECK {\n            connect_timeout 3\n        }\n    }\n"
            for r in range(reals)
        )
        blocks.append(
            f"virtual_server 10.2.{n // 250}.{n % 250 + 1} 80 {{\n    delay_loop 6\n"
            f"    lb_algo rr\n    lb_kind DR\n    protocol TCP\n{servers}}}\n"
        )
    return "".join(blocks)


def nested(depth: int) -> str:
    return "global_defs " + "{\n" * depth + "}\n" * depth


CASES: dict[str, Callable[[Path], str]] = {
    "255 VRRP instances on one interface": lambda _d: instances(255),
    "1,000 VIPs on one instance": lambda _d: vips(1000),
    "1,000 virtual servers": lambda _d: virtual_servers(1000, 1),
    "10,000 real servers (100 x 100)": lambda _d: virtual_servers(100, 100),
    "braces nested 100,000 deep": lambda _d: nested(100_000),
    "an include of itself": lambda d: f"include {d / 'keepalived.conf'}\n",
    "a glob of 1,024 brace alternatives": lambda _d: (
        "include /nonexistent/" + "{a,b}" * 10 + "*.conf\n"
    ),
    "a 100 MB file": lambda _d: "# " + "x" * 97 + "\n",  # repeated to 100 MB below
}


def measure(argv: list[str]) -> tuple[float, int | None, int, str]:
    """(wall s, peak RSS KiB or None, exit status, last output line) of one run."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["/usr/bin/time", "-f", "peak_rss_kib=%M", *argv],
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT,
        )
    except subprocess.TimeoutExpired:
        return TIME_LIMIT, None, -1, "did not finish (hang)"
    wall = time.monotonic() - started
    found = re.search(r"peak_rss_kib=(\d+)", result.stderr)
    lines = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line and "peak_rss_kib" not in line and not line.startswith("Command exited")
    ]
    return wall, int(found.group(1)) if found else None, result.returncode, (lines or [""])[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vipkeeper-limits-") as work:
        directory = Path(work)
        for name, make in CASES.items():
            if args.only and args.only not in name:
                continue
            path = directory / "keepalived.conf"
            text = make(directory)
            if name.startswith("a 100 MB"):
                with path.open("w") as handle:
                    for _ in range(100 * 2**20 // len(text)):
                        handle.write(text)
            else:
                path.write_text(text)
            size = path.stat().st_size
            ours = measure([str(VIPKEEPER), "check", "-f", str(path)])
            theirs = measure([KEEPALIVED, "--config-test", "-f", str(path)])
            rows.append((name, size, ours, theirs))
            print(f"{name}: vipkeeper {ours[0]:.2f} s exit {ours[2]}: {ours[3][:100]}",
                  file=sys.stderr, flush=True)  # fmt: skip

    def cell(result: tuple[float, int | None, int, str]) -> str:
        wall, rss, status, _last = result
        memory = f"{rss / 1024:.0f} MiB" if rss else "-"
        verdict = "hang" if status == -1 else ("accepted" if status == 0 else "refused")
        return f"{verdict}, {wall:.2f} s, {memory}"

    if args.markdown:
        print("| case | size | vipkeeper check | keepalived --config-test |")
        print("|---|---|---|---|")
    for name, size, ours, theirs in rows:
        if args.markdown:
            print(f"| {name} | {size / 2**20:.1f} MiB | {cell(ours)} | {cell(theirs)} |")
        else:
            print(f"{name:<40} {size / 2**20:7.1f} MiB  vipkeeper {cell(ours):<32} "
                  f"keepalived {cell(theirs)}")  # fmt: skip
        if ours[2] != 0:
            print(f"    vipkeeper: {ours[3][:160]}")
    hangs = [name for name, _size, ours, _theirs in rows if ours[2] == -1]
    return 1 if hangs else 0


if __name__ == "__main__":
    sys.exit(main())
