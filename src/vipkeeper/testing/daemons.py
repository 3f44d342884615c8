"""Running vipkeeper daemons in a namespace `Lab`, for the netns tests, the soak and benchmarks.

What this owns: writing keepalived.conf text for one `vrrp_instance` (plus `vrrp_script`
blocks), starting `vipkeeper run --log-format json` in a lab host with its stderr captured to a
file in the lab's workdir, reading the state transitions back from that JSON log, and the
bounded waits the tests use ("who holds the VIP", "does the client reach the VIP"), each with
the bound stated by the caller and the daemons' logs in the failure message.

It never sleeps for a fixed time to wait for a condition: every wait is a `waits.poll` with a
deadline. Processes are started with `Lab.popen`, so the lab's teardown kills them.

    net = Subnet.next()                      10.<n>.0.0/24 and fd00:<n>::/64, unique per test
    text = instance_config(priority=200, vips=[net.vip4_cidr], advert_int=1, ...)
    router = start_vipkeeper(lab, host, text)   -> Vipkeeper (.stop(), .transitions(), ...)
    wait_for_holders(lab, [h1, h2], net.vip4_cidr, ["h1"], within=8, daemons=[...])
    wait_until_reachable(lab, client, net.vip4, within=5)
"""

from __future__ import annotations

import datetime
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vipkeeper.testing.netns import DaemonProcess, Host, Keepalived, Lab
from vipkeeper.testing.waits import POLL_INTERVAL, poll

# How long a "did it happen" poll of the netns tests may take: generous, so a slow run fails on
# a timing assertion with the measured figure rather than on a poll timeout; it covers the
# daemons' start (several seconds of Python on a loaded 2-core machine).
SETTLE = 15.0
V3_FAST = {"version": 3, "advert_int": 0.2}  # instance_config(**V3_FAST): sub-second failovers


def vipkeeper_argv() -> list[str]:
    """The `vipkeeper` console script of the interpreter running the tests (or `-m`)."""
    script = Path(sys.executable).parent / "vipkeeper"
    if script.exists():
        return [str(script)]
    found = shutil.which("vipkeeper")
    return [found] if found else [sys.executable, "-m", "vipkeeper"]


# -- addresses ---------------------------------------------------------------------------------

_subnets = itertools.count(1 + os.getpid() % 200)


@dataclass(frozen=True)
class Subnet:
    """Addresses of one test: hosts are 10.N.0.h/24 and fd00:N::h/64, the VIP is host 100."""

    number: int

    @classmethod
    def next(cls) -> Subnet:
        return cls(1 + next(_subnets) % 250)

    def v4(self, host: int) -> str:
        return f"10.{self.number}.0.{host}"

    def v4_cidr(self, host: int) -> str:
        return f"{self.v4(host)}/24"

    def v6(self, host: int) -> str:
        return f"fd00:{self.number}::{host:x}"

    def v6_cidr(self, host: int) -> str:
        return f"{self.v6(host)}/64"

    @property
    def vip4(self) -> str:
        return self.v4(100)

    @property
    def vip4_cidr(self) -> str:
        return self.v4_cidr(100)

    @property
    def vip6(self) -> str:
        return self.v6(0x100)

    @property
    def vip6_cidr(self) -> str:
        return self.v6_cidr(0x100)


# -- configuration text ------------------------------------------------------------------------


def instance_config(
    *,
    priority: int,
    vips: Sequence[str],
    name: str = "VI_1",
    interface: str = "eth0",
    vrid: int = 51,
    state: str = "BACKUP",
    version: int = 2,
    advert_int: float = 1,
    nopreempt: bool = False,
    auth_pass: str | None = None,
    unicast_src_ip: str | None = None,
    unicast_peers: Sequence[str] = (),
    track_interfaces: Sequence[str] = (),
    track_scripts: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """One `vrrp_instance` block in keepalived.conf syntax (read by vipkeeper and keepalived).

    `track_interfaces` / `track_scripts` are whole lines (`"trk0"`, `"chk weight -150"`).
    """
    lines = [
        f"vrrp_instance {name} {{",
        f"    state {state}",
        f"    interface {interface}",
        f"    virtual_router_id {vrid}",
        f"    priority {priority}",
        f"    version {version}",
        f"    advert_int {advert_int:g}",
    ]
    if nopreempt:
        lines.append("    nopreempt")
    if auth_pass is not None:
        lines += [
            "    authentication {",
            "        auth_type PASS",
            f"        auth_pass {auth_pass}",
            "    }",
        ]
    if unicast_src_ip is not None:
        lines.append(f"    unicast_src_ip {unicast_src_ip}")
    if unicast_peers:
        lines += ["    unicast_peer {", *(f"        {peer}" for peer in unicast_peers), "    }"]
    if track_interfaces:
        lines += ["    track_interface {", *(f"        {t}" for t in track_interfaces), "    }"]
    if track_scripts:
        lines += ["    track_script {", *(f"        {t}" for t in track_scripts), "    }"]
    lines += [f"    {line}" for line in extra]
    lines += ["    virtual_ipaddress {", *(f"        {vip}" for vip in vips), "    }", "}"]
    return "\n".join(lines) + "\n"


def script_config(
    name: str, command: str, *, interval: float = 0.2, weight: int = 0, fall: int = 1, rise: int = 1
) -> str:
    """One `vrrp_script` block; `command` is the whole quoted command line."""
    return (
        f"vrrp_script {name} {{\n"
        f'    script "{command}"\n'
        f"    interval {interval:g}\n"
        f"    weight {weight}\n"
        f"    fall {fall}\n"
        f"    rise {rise}\n"
        "}\n"
    )


def global_defs(router_id: str) -> str:
    """global_defs that keepalived needs to run scripts as root; harmless for vipkeeper."""
    return (
        "global_defs {\n"
        f"    router_id {router_id}\n"
        "    enable_script_security\n"
        "    script_user root\n"
        "}\n"
    )


# -- the daemon --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One `OLD -> NEW (reason)` line of a daemon's JSON log; `at` is seconds since the epoch."""

    at: float
    instance: str
    old: str
    new: str
    reason: str


def log_time(text: str) -> float:
    """A JSON log line's `ts` (UTC to the millisecond, 2026-01-02T03:04:05.678Z) as epoch
    seconds."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


class Vipkeeper(DaemonProcess):
    """A `vipkeeper run` process in a lab host."""

    def __init__(
        self,
        lab: Lab,
        host: Host,
        process: subprocess.Popen[bytes],
        config_path: Path,
        log_path: Path,
        pid_path: Path,
        control_socket: Path,
    ) -> None:
        super().__init__(process, log_path)
        self.lab = lab
        self.host = host
        self.config_path = config_path
        self.pid_path = pid_path
        self.control_socket = control_socket

    def __repr__(self) -> str:
        return f"<vipkeeper in {self.host.name} pid {self.process.pid}>"

    def transitions(self, instance: str | None = None) -> list[Transition]:
        return [
            Transition(
                at=log_time(entry["ts"]),
                instance=entry["instance"],
                old=entry["old_state"],
                new=entry["new_state"],
                reason=entry["reason"],
            )
            for entry in self.records()
            if "new_state" in entry and (instance is None or entry["instance"] == instance)
        ]

    def states(self, instance: str | None = None) -> list[str]:
        """The states entered, in order (INITIALIZE after a stop)."""
        return [t.new for t in self.transitions(instance)]

    def state(self, instance: str | None = None) -> str:
        entered = self.states(instance)
        return entered[-1] if entered else "INITIALIZE"

    def entered(self, state: str, *, after: float = 0.0) -> Transition | None:
        """The first transition into `state` at or after `after` (epoch seconds)."""
        return next((t for t in self.transitions() if t.new == state and t.at >= after), None)


def start_vipkeeper(
    lab: Lab,
    host: Host,
    config: str,
    *,
    extra_args: Sequence[str] = (),
    command: Sequence[str] | None = None,
    owner: int | None = None,
    control_socket: Path | None = None,
) -> Vipkeeper:
    """`vipkeeper run -f CONF --log-format json --pidfile PID --control-socket SOCK` in
    `host` (its own control socket in the lab's workdir unless given); output to a file.

    `command` replaces `vipkeeper` (e.g. behind setpriv, to drop privileges); `owner` (a uid)
    gets the daemon's directory, where it writes its pidfile and control socket."""
    directory = lab.workdir / f"vipkeeper-{host.name}-{secrets.token_hex(2)}"
    directory.mkdir(parents=True)
    if owner is not None:
        os.chown(directory, owner, owner)
    config_path = directory / "keepalived.conf"
    log_path = directory / "vipkeeper.log"
    pid_path = directory / "vipkeeper.pid"
    control_socket = control_socket or directory / "vipkeeper.sock"
    config_path.write_text(config)
    argv = [*(command or vipkeeper_argv()), "run", "-f", str(config_path),
            "--log-format", "json", "--pidfile", str(pid_path),
            "--control-socket", str(control_socket), *extra_args]  # fmt: skip
    with log_path.open("wb") as log:
        process = lab.popen(host, *argv, stdout=log, stderr=subprocess.STDOUT)
    return Vipkeeper(lab, host, process, config_path, log_path, pid_path, control_socket)


Daemon = Vipkeeper | Keepalived


def describe(daemons: Iterable[Daemon]) -> str:
    """The logs of `daemons`, for a failure message."""
    parts = []
    for daemon in daemons:
        kind = "vipkeeper" if isinstance(daemon, Vipkeeper) else "keepalived"
        status = "running" if daemon.running() else f"exited {daemon.process.returncode}"
        parts.append(f"--- {kind} in {daemon.host.name} ({status}) ---\n{daemon.log()}")
    return "\n".join(parts)


# -- waiting -----------------------------------------------------------------------------------


def family_of(vip_cidr: str) -> str:
    return "inet6" if ":" in vip_cidr else "inet"


def holders(lab: Lab, hosts: Iterable[Host], vip_cidr: str) -> list[str]:
    """Names of the hosts that have `vip_cidr` (e.g. "10.1.0.100/24") on their interface."""
    family = family_of(vip_cidr)
    return [host.name for host in hosts if vip_cidr in lab.addresses(host, family)]


def wait_for_holders(
    lab: Lab,
    hosts: Sequence[Host],
    vip_cidr: str,
    expected: Sequence[str],
    *,
    within: float,
    daemons: Iterable[Daemon] = (),
) -> float:
    """Wait until exactly the hosts named in `expected` hold the VIP; the time it took."""
    daemons = list(daemons)
    start = time.monotonic()

    def check() -> None:
        found = holders(lab, hosts, vip_cidr)
        assert sorted(found) == sorted(expected), (
            f"{vip_cidr} held by {found}, expected {list(expected)} within {within} s\n"
            + describe(daemons)
        )

    poll(within, check)
    return time.monotonic() - start


def assert_holders_throughout(
    lab: Lab,
    hosts: Sequence[Host],
    vip_cidr: str,
    expected: Sequence[str],
    *,
    seconds: float,
    daemons: Iterable[Daemon] = (),
) -> int:
    """Sample the holders every POLL_INTERVAL for `seconds`: always exactly `expected`.

    This is how a test proves that something does *not* happen (no preemption, no second
    Master); the watch has a fixed length by nature. Returns the number of samples taken.
    """
    daemons = list(daemons)
    end = time.monotonic() + seconds
    samples = 0
    while time.monotonic() < end:
        found = holders(lab, hosts, vip_cidr)
        assert sorted(found) == sorted(expected), (
            f"{vip_cidr} held by {found} after {samples} good samples, expected {list(expected)}\n"
            + describe(daemons)
        )
        samples += 1
        time.sleep(POLL_INTERVAL)
    return samples


def ping_once(lab: Lab, client: Host, address: str) -> bool:
    family = "-6" if ":" in address else "-4"
    result = lab.run(client, "ping", family, "-n", "-c", "1", "-W", "1", address, check=False)
    return result.returncode == 0


def wait_until_reachable(
    lab: Lab, client: Host, address: str, *, within: float, daemons: Iterable[Daemon] = ()
) -> None:
    """Wait until one ping from `client` to `address` is answered."""
    daemons = list(daemons)

    def check() -> None:
        assert ping_once(lab, client, address), (
            f"{client.name} gets no answer from {address} within {within} s\n" + describe(daemons)
        )

    poll(within, check)
