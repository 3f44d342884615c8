"""Start-up: exec to "in the election", keepalived and vipkeeper side by side in the same run.

Each run is a fresh lab: one router and a listener on one bridge. The listener's raw socket
(IPPROTO 112, in its own namespace) waits for VRRP; then the router's daemon is started (the
wall-clock time just before `Popen` is its exec time) with one v3 instance, advert_int 0.1,
priority 254, state BACKUP. Alone on the LAN, it enters BACKUP as soon as its sockets are open
and sends its first advert one Master_Down_Interval later (3 x 0.1 + 2/256 x 0.1 = 0.3008 s, the
same for both daemons). So:

    first advert on the wire - exec             what the listener sees (kernel timestamp)
    ... - Master_Down_Interval                  exec to "in the election" (sockets open, BACKUP)

vipkeeper's own log gives a cross-check: its `in the election` line (at its millisecond
timestamp), written when `vipkeeper.launch` has removed stale VIPs and opened the sockets, before
asyncio and the daemon load; and `INITIALIZE -> BACKUP`, written once they have (the instances'
start is dated when they entered the election, so the loading overlaps the Master_Down_Timer).
Runs alternate between the daemons, so the machine's drift falls on both alike; the medians are
compared as a ratio and a difference (goal: within 100 ms of keepalived).

    sudo .venv/bin/python bench/startup.py --runs 10 [--markdown] [--json FILE]
         [--config vrrp|lvs]   vrrp: one instance; lvs: plus a virtual server with two real
                               servers and TCP_CHECKs (nftables data plane)
    .venv/bin/python bench/startup.py --where [--runs 8] [--markdown]
    .venv/bin/python bench/startup.py --instructions [--markdown]

vipkeeper's modules are compiled to bytecode first (as an installed wheel's are). Root only; all
traffic stays inside the lab's namespaces, which are removed after every run. The load average
is printed before and after, and the CPU time of `python -c "import asyncio"` as a yardstick of
the machine's speed at the time, which drifts on a shared host whatever the load average says:
vipkeeper's figure moves with both far more than keepalived's.

`--where` needs no root and no lab: where vipkeeper's start-up CPU goes, as the CPU time
(user + system, median of --runs) of fresh interpreters doing growing parts of what `vipkeeper
run` does, in its order, up to the election and after it (loading the daemon); then the daemon's
whole import compiled from source (no bytecode), and the part of it spent creating dataclasses
(their generated methods are compiled at import, every start).

`--instructions` needs valgrind and no root: the same steps counted in instructions
(`valgrind --tool=callgrind`), which do not move with the machine's speed or load, so two trees
can be compared on a shared host: the interpreter, `vipkeeper run` up to the election for the
one-instance configuration (the command line, the file loaded, the instances in the election;
its interface is absent, so no address is looked up and no socket opened), and the daemon as
`vipkeeper run` then builds it (asyncio and its modules imported, the daemon constructed).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _netns import DAEMONS, Lab, listen_for_adverts, machine_summary, start_daemon
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


def _logged_at(log: str, text: str) -> float | None:
    """The time of the first JSON log line whose message holds `text`."""
    for line in log.splitlines():
        if line.startswith("{") and text in json.loads(line)["msg"]:
            return log_time(json.loads(line)["ts"])
    return None


def one_run(daemon: str, kind: str) -> dict[str, Any]:
    with Lab() as lab:
        router = lab.add_host("r1", [f"{SUBNET}.1/24"])
        listener_host = lab.add_host("listen", [f"{SUBNET}.2/24"])
        listener = listen_for_adverts(
            lab, listener_host, f"{SUBNET}.2", "--count", "1", "--timeout", "30"
        )
        assert listener.stdout is not None
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
            for key, text in (("logged_entered", "in the election"),
                              ("logged_backup", "INITIALIZE -> BACKUP")):  # fmt: skip
                logged = _logged_at(started.log(), text)
                result[key] = None if logged is None else logged - exec_at
        started.stop()
        return result


# Growing parts of what `vipkeeper run` does, in its order: each row runs its statements after
# the rows above it, in a fresh interpreter with the garbage collector off (as `vipkeeper run`
# has it while it imports the daemon). sys.argv[1] is the one-instance configuration, with an
# interface that is absent (no address to look up, no socket to open). The first three rows are
# before the election, the rest overlap the instances' Master_Down_Timer.
WHERE = (
    ("the interpreter itself", ()),
    ("the command line (argparse)", ("from vipkeeper.cli import build_parser",)),
    (
        "the configuration loaded: lexer, parser, builders, model, logging",
        (
            "from vipkeeper.launch import enter_election, load_logged",
            "config = load_logged(sys.argv[1]).config",
        ),
    ),
    ("in the election: the plan, stale VIPs, sockets", ("enter_election(config)",)),
    (
        "then: asyncio (without ssl, as `vipkeeper run` loads it)",
        ("from vipkeeper.launch import import_asyncio_without_ssl", "import_asyncio_without_ssl()"),
    ),
    (
        "then: the VRRP core, driver, adapters (rtnetlink, sockets, timers)",
        (
            "import vipkeeper.read_policy",
            "import vipkeeper.drivers.vrrp",
            "import vipkeeper.io.addresses",
            "import vipkeeper.io.links",
            "import vipkeeper.io.gratuitous",
            "import vipkeeper.io.vrrp_socket",
        ),
    ),
    ("then: the daemon, the rest of `vipkeeper.daemon`", ("import vipkeeper.daemon",)),
)

# Counts and times dataclass creation inside the child (dataclasses._process_class is where
# a dataclass's methods are generated and compiled, in CPython 3.11).
_DATACLASS_PROBE = """
import dataclasses, time
_process = dataclasses._process_class
spent = [0.0, 0]
def _timed(*args, **kwargs):
    start = time.process_time()
    try:
        return _process(*args, **kwargs)
    finally:
        spent[0] += time.process_time() - start
        spent[1] += 1
dataclasses._process_class = _timed
"""


def child_cpu(code: str, env: dict[str, str] | None = None, *args: str) -> tuple[float, str]:
    """CPU seconds (user + system) of `python -c code args`, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return used, done.stdout


def where(runs: int, markdown: bool) -> None:
    """Print where the import CPU goes (see the module docstring)."""
    rows: list[tuple[str, float]] = []
    statements: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        conf = Path(scratch) / "keepalived.conf"
        conf.write_text(config("vrrp").replace("interface eth0", f"interface {ABSENT}"))
        for label, more in WHERE:
            statements.extend(more)
            code = "import gc, sys; gc.disable()\n" + "".join(f"{line}\n" for line in statements)
            cpu = statistics.median(child_cpu(code, None, str(conf))[0] for _ in range(runs))
            rows.append((label, cpu))
    daemon = (
        "import gc; gc.disable()\nfrom vipkeeper.launch import import_daemon\nimport_daemon()\n"
    )
    with tempfile.TemporaryDirectory() as scratch:
        # A copy of the package without __pycache__, first on the path: compiled at import.
        import vipkeeper

        source = Path(vipkeeper.__file__).parent
        shutil.copytree(source, Path(scratch) / "vipkeeper",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        env = {**os.environ, "PYTHONPATH": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        uncompiled = statistics.median(child_cpu(daemon, env)[0] for _ in range(runs))
    probe = _DATACLASS_PROBE + daemon + "print(spent[0], spent[1])"
    samples = [child_cpu(probe)[1].split() for _ in range(runs)]
    dataclass_cpu = statistics.median(float(s[0]) for s in samples)
    dataclasses = int(samples[0][1])
    print(f"# {machine_summary()}, load average {_load()}, {_yardstick()}")
    print(f"# CPU (user + system) of fresh interpreters, median of {runs} each")
    previous = 0.0
    if markdown:
        print("| what | CPU (ms) | cumulative (ms) |\n|---|---|---|")
    for label, cumulative in rows:
        step = (cumulative - previous) * 1000
        previous = cumulative
        if markdown:
            print(f"| {label} | {step:.0f} | {cumulative * 1000:.0f} |")
        else:
            print(f"{label:<66} {step:5.0f} ms  cumulative {cumulative * 1000:5.0f} ms")
    print(f"the daemon's import compiled from source (no bytecode): {uncompiled * 1000:.0f} ms")
    print(f"of the daemon's import, creating its {dataclasses} dataclasses: "
          f"{dataclass_cpu * 1000:.0f} ms")  # fmt: skip


# An interface name no host has: the configuration loads, nothing is looked up or opened.
ABSENT = "vk-absent0"

# `vipkeeper run` up to the election: the command line, the configuration, the instances in it.
_ENTER_ELECTION = """
import gc, sys
gc.disable()
from vipkeeper.cli import build_parser
from vipkeeper.launch import enter_election, load_logged
build_parser().parse_args(["run", "-f", sys.argv[1]])
config = load_logged(sys.argv[1]).config
early = enter_election(config)
"""

# ... and then the daemon as `vipkeeper run` builds it before its loop starts.
_BUILD_DAEMON = (
    _ENTER_ELECTION
    + """
from vipkeeper.launch import import_daemon
import_daemon()
from vipkeeper.daemon import Daemon
Daemon(config, sys.argv[1], control_socket="", early=early)
"""
)


def child_instructions(code: str, *args: str) -> int:
    """Instructions executed by `python -c code args` under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", code, *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split()[-1])
    raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr}")


def instructions(markdown: bool) -> None:
    """Print the instruction counts of `--instructions` (see the module docstring)."""
    with tempfile.TemporaryDirectory() as scratch:
        conf = Path(scratch) / "keepalived.conf"
        conf.write_text(config("vrrp").replace("interface eth0", f"interface {ABSENT}"))
        rows = [
            ("the interpreter itself", child_instructions("pass")),
            ("in the election: command line, configuration loaded, instances in the election",
             child_instructions(_ENTER_ELECTION, str(conf))),
            ("then the daemon built: asyncio and its modules imported, daemon constructed",
             child_instructions(_BUILD_DAEMON, str(conf))),
        ]  # fmt: skip
    import vipkeeper

    print(f"# {machine_summary()}; vipkeeper from {Path(vipkeeper.__file__).parent}")
    if markdown:
        print("| what | instructions (millions) |\n|---|---|")
    for label, count in rows:
        if markdown:
            print(f"| {label} | {count / 1e6:.0f} |")
        else:
            print(f"{label:<80} {count / 1e6:6.0f} M")


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _yardstick() -> str:
    """The CPU time of `python -c "import asyncio"`, median of 5, as text."""
    cpu = statistics.median(child_cpu("import asyncio")[0] for _ in range(5))
    return f'python -c "import asyncio" {cpu * 1000:.0f} ms of CPU'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--config", choices=("vrrp", "lvs"), default="vrrp")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--where", action="store_true", help="where the start-up CPU goes")
    parser.add_argument(
        "--instructions", action="store_true", help="start-up in instructions (valgrind)"
    )
    args = parser.parse_args()
    import vipkeeper

    compileall.compile_dir(str(Path(vipkeeper.__file__).parent), quiet=1)
    if args.where:
        where(args.runs, args.markdown)
        return 0
    if args.instructions:
        instructions(args.markdown)
        return 0
    load_before, yardstick = _load(), _yardstick()
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
    logged = {
        key: [r[key] for r in results if r.get(key) is not None]
        for key in ("logged_entered", "logged_backup")
    }
    print(f"# {machine_summary()}")
    print(f"# load average before {load_before}, after {_load()}; {yardstick}")
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
    for key, text in (("logged_entered", "in the election"),
                      ("logged_backup", "INITIALIZE -> BACKUP (the daemon loaded)")):  # fmt: skip
        if logged[key]:
            print(f"vipkeeper's own log, exec to {text}, median "
                  f"{statistics.median(logged[key]) * 1000:.0f} ms")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"config": args.config, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
