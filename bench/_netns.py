"""What the VRRP benchmarks share beyond the test package: both daemons, /proc readings.

The lab is `vipkeeper.testing.netns.Lab` (every host a namespace on one bridge; `teardown()`
kills what runs there and deletes the namespaces; `hard_fail`, `namespace_pids`), the waits are
`vipkeeper.testing.waits`. This module adds what only the benchmarks need:

    keepalived_conf(...)            one keepalived.conf text that both daemons read unchanged
    start_daemon(lab, host, daemon, conf) -> Daemon   "keepalived" or "vipkeeper", in host's ns
    failover_lab(lab, daemon, ...)  r1 (Master), r2 (Backup) and a client, r1 holding the VIP
    vips_on(host) -> set[str]       addresses on host's eth0 (ip -n, no process in the ns)
    listen_for_adverts(lab, host, address, ...)   vipkeeper.testing.adverts there, once ready
    cpu_seconds(pids), rss_kib(pids)  /proc/PID/schedstat run time and /proc/PID/status VmRSS

Needs root, iproute2, /usr/sbin/keepalived and the project's venv (the `vipkeeper` script).
Nothing here sends a packet outside the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vipkeeper.testing.daemons import start_vipkeeper
from vipkeeper.testing.netns import KEEPALIVED, DaemonProcess, Host, Lab
from vipkeeper.testing.waits import WaitTimeout, wait_until


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # A benchmark stopped with kill/timeout unwinds like Ctrl-C: `with Lab()` and the atexit
    # hook then kill the daemons and delete the namespaces instead of leaving them behind.
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
DAEMONS = ("keepalived", "vipkeeper")

__all__ = [
    "DAEMONS",
    "Daemon",
    "Host",
    "Lab",
    "cpu_seconds",
    "elected",
    "failover_lab",
    "keepalived_conf",
    "listen_for_adverts",
    "machine_summary",
    "rss_kib",
    "start_daemon",
    "start_routers",
    "vips_on",
    "wake_ups",
]


def keepalived_conf(
    *,
    router_id: str,
    priority: int,
    version: int,
    advert_int: float,
    vips: Sequence[tuple[int, str]],
    interface: str = "eth0",
) -> str:
    """A keepalived.conf with one vrrp_instance per (vrid, "address/prefix") in `vips`.

    Both routers start as BACKUP, so the election decides who is Master; preemption stays on
    (the default). Nothing daemon-specific: keepalived and vipkeeper read the same text.
    """
    advert = f"{advert_int:g}"
    blocks = [f"global_defs {{\n    router_id {router_id}\n}}\n"]
    for vrid, vip in vips:
        blocks.append(
            f"vrrp_instance VI_{vrid} {{\n"
            f"    state BACKUP\n"
            f"    interface {interface}\n"
            f"    version {version}\n"
            f"    virtual_router_id {vrid}\n"
            f"    priority {priority}\n"
            f"    advert_int {advert}\n"
            f"    virtual_ipaddress {{\n        {vip}\n    }}\n"
            f"}}\n"
        )
    return "\n".join(blocks)


@dataclass
class Daemon(DaemonProcess):
    """A VRRP daemon running in a lab host's namespace."""

    kind: str  # "keepalived" or "vipkeeper"
    host: Host
    process: subprocess.Popen[bytes]
    log_path: Path
    profile: Path | None = None

    def profile_clear(self) -> None:
        if self.profile is not None:
            self.process.send_signal(signal.SIGUSR2)

    def profile_dump(self, timeout: float = 30.0) -> Path | None:
        """Ask the profiled daemon for its statistics; the path once written, else None."""
        if self.profile is None:
            return None
        profile = self.profile
        profile.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        try:
            wait_until(
                lambda: profile.exists() and profile.stat().st_size > 0,
                timeout=timeout,
                what=f"{profile} written",
                interval=0.05,
            )
        except WaitTimeout:
            return None
        time.sleep(0.2)  # let the write finish
        return profile

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: priority 0, VIPs removed); SIGKILL if it lingers."""
        return super().stop(timeout)

    def pids(self) -> list[int]:
        """The daemon's processes: everything in its namespace (keepalived: parent + VRRP
        child; vipkeeper: one process, as `ip netns exec` execs it)."""
        return Lab.namespace_pids(self.host)


# vipkeeper under cProfile, controllable from outside: SIGUSR2 clears the statistics (start of
# a measured window), SIGUSR1 writes them to argv[1] (end of it); they are written at exit too.
_PROFILED = """
import cProfile, signal, sys
from vipkeeper.cli import main
profiler = cProfile.Profile()
def dump(*_):
    profiler.disable(); profiler.dump_stats(sys.argv[1]); profiler.enable()
def clear(*_):
    profiler.disable(); profiler.clear(); profiler.enable()
signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGUSR2, clear)
profiler.enable()
try:
    sys.exit(main(sys.argv[2:]))
finally:
    profiler.disable(); profiler.dump_stats(sys.argv[1])
"""


def start_daemon(
    lab: Lab,
    host: Host,
    kind: str,
    conf: str,
    *,
    profile: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Daemon:
    """Start `kind` in `host`'s namespace with `conf` as its keepalived.conf.

    `profile` (vipkeeper only): run it under cProfile; `Daemon.profile_clear()` /
    `Daemon.profile_dump()` bracket a window, and the stats are written at exit as well.
    `extra_args` (vipkeeper only): more `vipkeeper run` options, e.g. `--no-autopilot`.
    """
    if kind == "keepalived":
        started: DaemonProcess = lab.start_keepalived(host, conf)
    elif kind == "vipkeeper":
        command = None if profile is None else [sys.executable, "-c", _PROFILED, str(profile)]
        started = start_vipkeeper(lab, host, conf, command=command, extra_args=extra_args)
    else:
        raise ValueError(f"unknown daemon {kind!r}")
    return Daemon(kind, host, started.process, started.log_path, profile)


def listen_for_adverts(lab: Lab, host: Host, address: str, *options: str) -> subprocess.Popen[str]:
    """`vipkeeper.testing.adverts` in `host`'s namespace on `address`, once it listens: one
    line per advert on its stdout (kernel receive time, source, priority)."""
    listener = lab.popen(
        host, sys.executable, "-m", "vipkeeper.testing.adverts", address, *options,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert listener.stdout is not None
    if listener.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the advert listener on {host.name} did not start")
    return listener


def vips_on(host: Host) -> set[str]:
    """Addresses ("a.b.c.d/len") on the host's interface, read from outside the namespace."""
    out = subprocess.run(
        ["ip", "-n", host.ns, "-j", "-4", "addr", "show", "dev", host.ifname],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    info: list[dict[str, Any]] = json.loads(out)
    return {f"{a['local']}/{a['prefixlen']}" for entry in info for a in entry["addr_info"]}


def start_routers(
    lab: Lab,
    daemon: str,
    *,
    version: int,
    advert_int: float,
    vips: Sequence[tuple[int, str]],
    prefixlen: int = 24,
    profiles: tuple[Path | None, Path | None] = (None, None),
) -> tuple[Daemon, Daemon]:
    """Routers r1 (10.0.0.1, priority 150) and r2 (10.0.0.2, priority 100) running `daemon`
    with one instance per (vrid, VIP) in `vips`; `profiles` as `start_daemon`'s, per router."""
    r1, r2 = (
        start_daemon(
            lab,
            lab.add_host(f"r{index}", [f"10.0.0.{index}/{prefixlen}"]),
            daemon,
            keepalived_conf(
                router_id=f"r{index}",
                priority=priority,
                version=version,
                advert_int=advert_int,
                vips=vips,
            ),
            profile=profile,
        )
        for index, priority, profile in ((1, 150, profiles[0]), (2, 100, profiles[1]))
    )
    return r1, r2


def failover_lab(
    lab: Lab, daemon: str, *, version: int, advert_int: float, vip_cidr: str, vrid: int = 51
) -> tuple[Host, Host, Host]:
    """`start_routers` with one instance, and a client (10.0.0.100), on one bridge
    (10.0.0.0/24); returns (r1, r2, client) once r1 holds the VIP."""
    daemons = start_routers(
        lab, daemon, version=version, advert_int=advert_int, vips=[(vrid, vip_cidr)]
    )
    r1, r2 = (each.host for each in daemons)
    client = lab.add_host("client", ["10.0.0.100/24"])

    wait_until(
        lambda: elected(daemons, {vip_cidr}),
        timeout=30,
        what=f"{daemon}: r1 holds {vip_cidr}, r2 does not",
    )
    return r1, r2, client


def elected(routers: tuple[Daemon, Daemon], wanted: set[str]) -> bool:
    """Whether the first router holds every address of `wanted` and the second none; a
    router whose daemon exited is an error, with its log."""
    for each in routers:
        if not each.running():
            raise RuntimeError(f"{each.kind} on {each.host.name} exited:\n{each.log()}")
    master, backup = (vips_on(each.host) for each in routers)
    return wanted <= master and not wanted & backup


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time the scheduler ran `pids`, every thread of each: the sum of sum_exec_runtime in
    /proc/PID/task/TID/schedstat (ns, so user + system time at nanosecond rather than clock-tick
    resolution). /proc/PID/schedstat alone covers only a process's main thread. A vanished pid
    or thread counts 0.
    """
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def wake_ups(pids: Iterable[int]) -> int:
    """Voluntary context switches so far (each is a sleep the thread woke from), summed over
    every thread of `pids`."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def rss_kib(pids: Iterable[int]) -> int:
    """VmRSS (KiB) summed over `pids`."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def machine_summary() -> str:
    keepalived = subprocess.run(
        [KEEPALIVED, "--version"], capture_output=True, text=True, timeout=10
    )
    version_line = (keepalived.stderr or keepalived.stdout).splitlines()[0]
    return (
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, {version_line.strip()}, "
        f"Python {platform.python_version()}"
    )
