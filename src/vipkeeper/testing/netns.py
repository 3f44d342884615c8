"""The network-namespace lab every netns test, soak and benchmark builds on: hosts on bridges.

Needs root and iproute2. Every lab has a unique prefix (`vk` + 6 hex digits) used for all its
namespaces, so parallel runs never collide; `teardown()` kills every process in them and deletes
them, and runs from the pytest fixture finalizer and, as a last resort, from `atexit`.
Must never: touch a namespace it did not create, or wait without a bound.

Topology: one namespace `<prefix>-br` holds the bridges (`br0` from the start, more with
`add_bridge`; STP off, multicast snooping off so 224.0.0.18 / ff02::12 reach every port). Each
host is a namespace `<prefix>-<name>` with `lo` up and one veth `eth0` whose peer is the bridge
port `p-<name>` in the bridge namespace; `add_link` gives it more (ports `p-<name>-<n>`). IPv6
duplicate address detection is off in host namespaces, so addresses are usable at once.

API (all methods are synchronous; a test drives asyncio code inside a namespace by running a
Python child there, see `python` / `spawn_python`):

    lab = Lab(workdir=None)            prefix, bridge namespace; workdir holds configs, pid
                                       files, logs (a temporary directory, removed at teardown,
                                       when None)
    lab.add_bridge(name)               one more bridge in the bridge namespace
    host = lab.add_host(name, addresses=(), ifname="eth0", bridge="br0")
                                       name: <= 10 characters [a-z0-9], not "br"; addresses
                                       like "10.0.0.1/24", "fd00::1/64";
                                       returns Host(name, ns, ifname, port)
    lab.add_link(host, ifname, bridge, addresses=())   one more interface on another bridge
    lab.hosts[name]                    Host by name; lab.bridge: the bridge namespace as a Host
    lab.ports[name][ifname]            the bridge port a host's interface hangs off
    lab.run(host, *argv, check=True, timeout=30, input=None) -> CompletedProcess[str]
    lab.popen(host, *argv, stdout=None, stderr=None) -> Popen   (killed at teardown)
    lab.python(host, code, *args, check=True, timeout=30) -> CompletedProcess[str]
    lab.spawn_python(host, code, *args, stdout=..., stderr=...) -> Popen
                                       the test interpreter (the venv's) with `-c code args`
    lab.mac(host) -> "aa:bb:..."       MAC of host.ifname
    lab.addresses(host, family="inet") -> list of "addr/prefixlen" on host.ifname
    lab.cut(host) / lab.restore(host)  the host's bridge ports down / up: it loses / regains
                                       carrier
    lab.detach(host) / lab.attach(host)
                                       bridge port off / back on the bridge: the host's link
                                       stays up but its frames go nowhere (a silent partition)
    lab.namespace_pids(host) -> [pid]  every process in the namespace (ip netns pids)
    lab.kill_all(host)                 SIGKILL every process in the namespace
    lab.hard_fail(host, pids=None) -> float
                                       pull the plug: freeze, cut, kill; the time of the freeze
    lab.start_keepalived(host, config_text, vrrp_only=True) -> Keepalived
                                       real keepalived 2.2.x in the namespace with per-lab pid
                                       files; .stop() (SIGTERM, then SIGKILL), .log() text
    lab.teardown()                     idempotent

    with Lab() as lab: ...             teardown on exit as well
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KEEPALIVED = "/usr/sbin/keepalived"
_NAME = re.compile(r"^[a-z0-9]{1,10}$")
_live_labs: set[Lab] = set()


@dataclass(frozen=True)
class Host:
    name: str  # as given to add_host
    ns: str  # network namespace name
    ifname: str  # the host's interface on the bridge, inside ns
    port: str  # the bridge port (in the bridge namespace) the host hangs off

    def argv(self, *argv: str) -> list[str]:
        """The command line that runs `argv` inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=30)


def _sysctl(ns: str, key: str, value: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _shorten(argv: Sequence[str]) -> str:
    return " ".join(arg if len(arg) <= 60 else arg[:57] + "..." for arg in argv)


ABORT_GRACE = 5.0  # seconds a daemon has to write its stacks after SIGABRT before SIGKILL


class DaemonProcess:
    """A daemon started by a test, its JSON log going to `log_path`: what every netns helper
    needs to stop it and read what it said."""

    def __init__(self, process: subprocess.Popen[Any], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (a VRRP daemon sends priority 0 and removes its VIPs); if it lingers past
        `timeout`, SIGABRT, then SIGKILL. Its exit status (negative: the signal that ended it).

        A Python daemon started with PYTHONFAULTHANDLER=1 (the netns suite sets it) answers
        SIGABRT by writing every thread's stack to its stderr, so the log of a daemon that
        would not stop says where it waited."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)
                try:
                    self.process.wait(ABORT_GRACE)
                except subprocess.TimeoutExpired:
                    self.process.kill()
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """Every JSON line of the log (a non-JSON line, e.g. a traceback, is skipped)."""
        entries = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return entries

    def messages(self, containing: str) -> list[dict[str, Any]]:
        return [entry for entry in self.records() if containing in entry.get("msg", "")]


class Keepalived(DaemonProcess):
    """A keepalived process started by `Lab.start_keepalived`."""

    def __init__(
        self, lab: Lab, host: Host, process: subprocess.Popen[bytes], files: dict[str, Path]
    ):
        super().__init__(process, files["log"])
        self.lab = lab
        self.host = host
        self.config_path = files["config"]
        self.pid_path = files["pid"]
        self.vrrp_pid_path = files["vrrp_pid"]

    @property
    def pid(self) -> int:
        return self.process.pid


class Lab:
    def __init__(self, workdir: str | os.PathLike[str] | None = None) -> None:
        self.prefix = "vk" + secrets.token_hex(3)
        self.bridge_ns = f"{self.prefix}-br"
        self.hosts: dict[str, Host] = {}
        self.ports: dict[str, dict[str, str]] = {}  # host name -> its interface -> bridge port
        self.bridge = Host(name="br", ns=self.bridge_ns, ifname="br0", port="")
        self._processes: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        self._own_workdir = workdir is None
        self.workdir = Path(
            tempfile.mkdtemp(prefix=f"{self.prefix}-") if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._torn_down = False
        _live_labs.add(self)
        try:
            self._add_namespace(self.bridge_ns)
            self.add_bridge("br0")
        except BaseException:
            self.teardown()
            raise

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    # -- building -------------------------------------------------------------------------

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def add_bridge(self, name: str) -> None:
        _ip("-n", self.bridge_ns, "link", "add", name, "type", "bridge",
            "stp_state", "0", "mcast_snooping", "0", "forward_delay", "0")  # fmt: skip
        _ip("-n", self.bridge_ns, "link", "set", name, "up")

    def add_host(
        self,
        name: str,
        addresses: Sequence[str] = (),
        ifname: str = "eth0",
        bridge: str = "br0",
    ) -> Host:
        if not _NAME.match(name):
            raise ValueError(f"host name {name!r}: use 1-10 characters a-z, 0-9")
        if name in self.hosts or name == "br":
            raise ValueError(f"host {name!r} exists")
        host = Host(name=name, ns=f"{self.prefix}-{name}", ifname=ifname, port=f"p-{name}")
        self._add_namespace(host.ns)
        # Before the veth exists, so it inherits the defaults: no DAD delay for IPv6 addresses.
        _sysctl(host.ns, "net.ipv6.conf.all.accept_dad", "0")
        _sysctl(host.ns, "net.ipv6.conf.default.accept_dad", "0")
        self.hosts[name] = host
        self.ports[name] = {}
        self._link(host, ifname, bridge, host.port, addresses)
        return host

    def add_link(self, host: Host, ifname: str, bridge: str, addresses: Sequence[str] = ()) -> str:
        """One more interface `ifname` in `host`, on `bridge`; the bridge port's name."""
        port = f"p-{host.name}-{len(self.ports[host.name])}"
        self._link(host, ifname, bridge, port, addresses)
        return port

    def _link(
        self, host: Host, ifname: str, bridge: str, port: str, addresses: Sequence[str]
    ) -> None:
        _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth",
            "peer", "name", ifname, "netns", host.ns)  # fmt: skip
        self.ports[host.name][ifname] = port
        _ip("-n", self.bridge_ns, "link", "set", port, "master", bridge)
        _ip("-n", self.bridge_ns, "link", "set", port, "up")
        for address in addresses:
            extra = ["nodad"] if ":" in address else []
            _ip("-n", host.ns, "addr", "add", address, "dev", ifname, *extra)
        _ip("-n", host.ns, "link", "set", ifname, "up")

    # -- running things -------------------------------------------------------------------

    def run(
        self,
        host: Host,
        *argv: str,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            host.argv(*argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in {host.ns}: {_shorten(argv)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def popen(
        self,
        host: Host,
        *argv: str,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        process = subprocess.Popen(
            host.argv(*argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
            start_new_session=True,
        )
        self._processes.append(process)
        return process

    def python(
        self, host: Host, code: str, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.run(host, sys.executable, "-c", code, *args, check=check, timeout=timeout)

    def spawn_python(
        self, host: Host, code: str, *args: str, **popen: Any
    ) -> subprocess.Popen[Any]:
        """The test interpreter with `-c code args` in `host`; `popen` as `Lab.popen`'s."""
        return self.popen(host, sys.executable, "-c", code, *args, **popen)

    # -- looking ----------------------------------------------------------------------------

    def mac(self, host: Host) -> str:
        info = json.loads(self.run(host, "ip", "-j", "link", "show", "dev", host.ifname).stdout)
        return str(info[0]["address"])

    def addresses(self, host: Host, family: str = "inet", dev: str | None = None) -> list[str]:
        info = json.loads(
            self.run(
                host, "ip", "-j", "-f", family, "addr", "show", "dev", dev or host.ifname
            ).stdout
        )
        return [f"{a['local']}/{a['prefixlen']}" for entry in info for a in entry["addr_info"]]

    # -- faults -----------------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        for port in self.ports[host.name].values():
            _ip("-n", self.bridge_ns, "link", "set", port, "down")

    def restore(self, host: Host) -> None:
        for port in self.ports[host.name].values():
            _ip("-n", self.bridge_ns, "link", "set", port, "up")

    def detach(self, host: Host) -> None:
        _ip("-n", self.bridge_ns, "link", "set", host.port, "nomaster")

    def attach(self, host: Host) -> None:
        _ip("-n", self.bridge_ns, "link", "set", host.port, "master", "br0")

    @staticmethod
    def namespace_pids(host: Host | str) -> list[int]:
        """Every process in the namespace (a daemon and its children)."""
        ns = host.ns if isinstance(host, Host) else host
        return sorted(int(pid) for pid in _ip("netns", "pids", ns, check=False).stdout.split())

    def kill_all(self, host: Host | str) -> None:
        """SIGKILL every process in the namespace, after freezing them all (SIGSTOP) so none
        can react to another's death: keepalived's VRRP child would otherwise notice its
        parent dying and send priority 0, turning a crash into a graceful hand-over."""
        _signal_all(self.namespace_pids(host), signal.SIGSTOP, signal.SIGKILL)

    def hard_fail(self, host: Host, pids: Sequence[int] | None = None) -> float:
        """The host dies at once, like a pulled plug; the wall-clock time it died.

        Its processes are frozen (SIGSTOP, so none gets to say goodbye: no priority-0
        advert, no address removal), its links are cut at once, so the moment adverts stop
        and the moment it stops answering are the same, then they are killed. `pids` listed
        beforehand (`namespace_pids`) keep the slow listing out of that moment.
        """
        pids = self.namespace_pids(host) if pids is None else list(pids)
        died_at = time.time()
        _signal_all(pids, signal.SIGSTOP)
        self.cut(host)
        _signal_all(pids, signal.SIGKILL)
        self.kill_all(host)  # anything that appeared meanwhile
        return died_at

    # -- keepalived ---------------------------------------------------------------------------

    def start_keepalived(self, host: Host, config: str, *, vrrp_only: bool = True) -> Keepalived:
        """Run /usr/sbin/keepalived in `host`'s namespace with `config` as keepalived.conf.

        Foreground (-n), logging to its own file (-l -D -G: console, detailed, no syslog), pid
        files under the lab's workdir (-p / -r / -c), so several keepalived in one machine and
        the system's own never share a pid file. `vrrp_only` adds -P (no checker process).
        """
        directory = self.workdir / f"keepalived-{host.name}-{secrets.token_hex(2)}"
        directory.mkdir(parents=True)
        files = {
            "config": directory / "keepalived.conf",
            "pid": directory / "keepalived.pid",
            "vrrp_pid": directory / "vrrp.pid",
            "checkers_pid": directory / "checkers.pid",
            "log": directory / "keepalived.log",
        }
        files["config"].write_text(config)
        argv = [KEEPALIVED, "-n", "-l", "-D", "-G", "-f", str(files["config"]),
                "-p", str(files["pid"]), "-r", str(files["vrrp_pid"]),
                "-c", str(files["checkers_pid"])]  # fmt: skip
        if vrrp_only:
            argv.append("-P")
        with files["log"].open("wb") as log:
            process = self.popen(host, *argv, stdout=log, stderr=subprocess.STDOUT)
        return Keepalived(self, host, process, files)

    # -- teardown -----------------------------------------------------------------------------

    def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        _live_labs.discard(self)
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in self._processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        for ns in reversed(self._namespaces):
            self.kill_all(ns)
            _ip("netns", "delete", ns, check=False)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _signal_all(pids: Sequence[int], *signals: signal.Signals) -> None:
    for signum in signals:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


@atexit.register
def _teardown_leftovers() -> None:
    for lab in list(_live_labs):
        lab.teardown()
