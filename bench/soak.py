"""Chaos soak, vipkeeper and keepalived side by side on the same LAN with the same faults.

Each daemon gets a fresh lab built the same way (vipkeeper.testing.chaos: routers r1, r2, r3 at
priorities 150, 120, 100 with a weight -60 track script, a client pinging the VIP and asking it
for HTTP) and plays the same seeded fault sequence for the same time. The invariants and the
figures are vipkeeper.testing.chaos's; this script prints one summary line per daemon, then a table
of both.

By default the daemons run one after the other. With --concurrent each daemon's soak runs at
the same time in its own process on its own LAN (its own namespaces and bridge), so both meet
the same machine load for the whole run; a child process's figures come back as JSON.

    sudo .venv/bin/python bench/soak.py --minutes 10 [--seed N] [--daemons vipkeeper,keepalived]
                                        [--concurrent] [--advert-int 0.2] [--json FILE]
                                        [--faults KIND,KIND...] [--markdown]

--faults narrows the catalogue (vipkeeper.testing.chaos.FAULTS) to the kinds named, to play a
few faults many times.

Exit status 1 when vipkeeper broke an invariant (its seed and fault sequence are printed, and
`make soak SEED=<seed>` replays it); keepalived's violations are reported, not failed on.
Root only; all traffic stays inside the lab's namespaces, which are removed after each run.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _netns import machine_summary
from vipkeeper.testing.chaos import ADVERT_INT, FAULTS, run_soak

ROWS = (
    ("rounds", "rounds"),
    ("rounds that hit the Master", "hit_rounds"),
    ("violations", "violations"),
    ("convergence median, Master hit (s)", "convergence_median"),
    ("convergence p95 (s)", "convergence_p95"),
    ("convergence max (s)", "convergence_max"),
    ("restarts", "restarts"),
    ("restart to first state, median (s)", "startup_median"),
    ("restart to first state, max (s)", "startup_max"),
    ("ping replies / outages", ("ping_replies", "ping_outages")),
    ("HTTP requests / failed", ("http_requests", "http_failed")),
    ("r3 RSS KiB, first / last quarter", "rss_kib"),
    ("r3 open fds, first / last quarter", "fds"),
)


def cell(figures: dict[str, Any], key: str | tuple[str, str]) -> str:
    if isinstance(key, tuple):
        return " / ".join(str(figures.get(k, "-")) for k in key)
    value = figures.get(key)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return " / ".join(f"{v:g}" for v in value)
    return str(value)


def table(results: list[dict[str, Any]], markdown: bool) -> str:
    names = [r["daemon"] for r in results]
    rows = [(label, [cell(r, key) for r in results]) for label, key in ROWS]
    kinds = sorted({k for r in results for k in r["median_by_fault"]})
    for kind in kinds:
        values = [r["median_by_fault"].get(kind) for r in results]
        shown = ["-" if v is None else f"{v:.2f}" for v in values]
        rows.append((f"convergence median after {kind} (s)", shown))
    if markdown:
        lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    else:
        width = max(len(label) for label, _ in rows)
        lines = [" " * width + "  " + "  ".join(f"{n:>12}" for n in names)]
        lines += [f"{label:<{width}}  " + "  ".join(f"{v:>12}" for v in values)
                  for label, values in rows]  # fmt: skip
    return "\n".join(lines)


def soak_one(daemon: str, seed: int, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Play the soak for one daemon in this process: its figures, and whether it broke one."""
    workdir = args.keep / f"{daemon}-{seed}"
    soak = run_soak(daemon, seed=seed, duration=args.minutes * 60,
                    advert_int=args.advert_int, workdir=workdir, faults=args.faults)  # fmt: skip
    print(soak.summary_line(), flush=True)
    if soak.violations:
        print(soak.replay_text(), flush=True)
        print(f"logs and client records: {workdir}", flush=True)
    figures = soak.summary()
    figures["violation_list"] = [{"round": v.round, "what": v.what} for v in soak.violations]
    return figures, bool(soak.violations)


def soak_concurrently(daemons: list[str], seed: int, args: argparse.Namespace) -> list[Any]:
    """One child process per daemon, all started together; their figures in `daemons` order."""
    with tempfile.TemporaryDirectory(prefix="vksoak-") as tmp:
        children = []
        for daemon in daemons:
            out = Path(tmp) / f"{daemon}.json"
            argv = [sys.executable, __file__, "--minutes", f"{args.minutes:g}",
                    "--seed", str(seed), "--daemons", daemon,
                    "--advert-int", f"{args.advert_int:g}", "--keep", str(args.keep),
                    "--faults", ",".join(args.faults), "--json", str(out)]  # fmt: skip
            children.append((daemon, out, subprocess.Popen(argv)))
        results = []
        for daemon, out, child in children:
            child.wait()
            if not out.exists():
                raise SystemExit(f"the {daemon} soak ended without figures ({child.returncode})")
            results.append(json.loads(out.read_text())["results"][0])
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="per daemon")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--daemons", default="vipkeeper,keepalived")
    parser.add_argument(
        "--concurrent", action="store_true", help="the daemons at the same time, each on a LAN"
    )
    parser.add_argument("--advert-int", type=float, default=ADVERT_INT)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=Path("artifacts/soak"),
                        help="daemon logs and client records go to KEEP/DAEMON-SEED")  # fmt: skip
    parser.add_argument("--faults", type=lambda text: tuple(text.split(",")), default=FAULTS,
                        help="fault kinds to draw from, comma-separated (default all)")  # fmt: skip
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    daemons = args.daemons.split(",")
    print(f"# {machine_summary()}")
    print(f"# seed {seed}, {args.minutes:g} min per daemon, advert_int {args.advert_int:g}"
          + (", daemons concurrently on separate LANs" if args.concurrent else "")
          + (f", faults {','.join(args.faults)}" if args.faults != FAULTS else ""))  # fmt: skip
    if args.concurrent and len(daemons) > 1:
        results = soak_concurrently(daemons, seed, args)
    else:
        results = [soak_one(daemon, seed, args)[0] for daemon in daemons]
    failed = any(r["daemon"] == "vipkeeper" and r["violations"] for r in results)
    print(table(results, args.markdown))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": seed, "minutes": args.minutes,
                                         "concurrent": args.concurrent,
                                         "results": results}, indent=2))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
