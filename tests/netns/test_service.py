"""vipkeeper as a production service: what packaging/vipkeeper.service relies on, proven here.

- Unprivileged: both directors of the LVS-DR lab run as a user that is not root and holds only
  CAP_NET_ADMIN and CAP_NET_RAW (setpriv with the unit's ambient capabilities, bounding set and
  no_new_privs); they elect, forward, and fail over on a hard failure of the Master.
- The service protocol against a fake `$NOTIFY_SOCKET`: READY=1 only once the configuration is
  applied (the instance started, its VRRP socket open), WATCHDOG=1 from the running daemon at
  the cadence `$WATCHDOG_USEC` asks for, RELOADING=1 then READY=1 around a reload, STOPPING=1.
- `systemd-analyze verify` accepts the unit, with vipkeeper installed where the unit expects it.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL
from vipkeeper.testing.daemons import (
    SETTLE,
    Subnet,
    Vipkeeper,
    describe,
    instance_config,
    vipkeeper_argv,
)
from vipkeeper.testing.lbnet import LbNet, director_config, serving
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "vipkeeper.service"
SYSUSERS = ROOT / "packaging" / "vipkeeper.sysusers"

# A uid and gid no account uses: the daemon gets nothing from being someone in particular.
SERVICE_UID = 64_123
# The unit's AmbientCapabilities / CapabilityBoundingSet, as setpriv spells them.
SERVICE_CAPS = "net_admin,net_raw"
# Bits of CAP_NET_ADMIN (12) and CAP_NET_RAW (13) in /proc/PID/status.
SERVICE_CAP_MASK = (1 << 12) | (1 << 13)
# advert_int 1: Master_Down_Interval plus the daemons' start (several seconds of Python start-up
# on a loaded 2-core machine); no assertion is about this time.
ELECTION = 15.0


def unit_capabilities() -> set[str]:
    """The capabilities packaging/vipkeeper.service grants, read from the unit itself."""
    found: dict[str, set[str]] = {}
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("AmbientCapabilities", "CapabilityBoundingSet"):
            found[key] = set(value.split())
    assert found["AmbientCapabilities"] == found["CapabilityBoundingSet"], found
    return found["AmbientCapabilities"]


def setpriv(uid: int) -> list[str]:
    """Run as `uid` with only the unit's two capabilities, as systemd would start it."""
    caps = ",".join(f"+{c}" for c in SERVICE_CAPS.split(","))
    return [
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}",
        f"--bounding-set=-all,{caps}", "--no-new-privs", "--",
    ]  # fmt: skip


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def logs(daemons: list[Vipkeeper]) -> str:
    return "\n".join(f"--- {d!r} ---\n{d.log()}" for d in daemons)


def errors_in(daemon: Vipkeeper) -> list[str]:
    return [str(e.get("msg")) for e in daemon.records() if e.get("level") == "error"]


def service_vipkeeper(uid: int) -> list[str]:
    """The `vipkeeper` command, after checking that the service user can run it (an
    interpreter in a directory only root may enter would make every later failure obscure)."""
    probe = [*setpriv(uid), *vipkeeper_argv(), "--version"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"uid {uid} cannot run {vipkeeper_argv()}: {result.stderr}"
    return vipkeeper_argv()


def test_the_test_drops_exactly_the_privileges_the_unit_keeps() -> None:
    assert unit_capabilities() == {f"CAP_{c.upper()}" for c in SERVICE_CAPS.split(",")}


def test_unprivileged_directors_elect_forward_and_fail_over(shared_dir: Path) -> None:
    with LbNet(shared_dir) as net:
        vipkeeper = service_vipkeeper(SERVICE_UID)
        command = [*setpriv(SERVICE_UID), *vipkeeper]
        d1 = net.start_vipkeeper(
            "d1", director_config(priority=150), command=command, owner=SERVICE_UID
        )
        d2 = net.start_vipkeeper(
            "d2", director_config(priority=100), command=command, owner=SERVICE_UID
        )
        daemons = [d1, d2]

        def d1_master() -> None:
            assert d1.states()[-1:] == ["MASTER"], logs(daemons)
            assert d2.states()[-1:] == ["BACKUP"], logs(daemons)

        poll(ELECTION, d1_master)
        for daemon in daemons:
            status = proc_status(daemon.process.pid)
            assert status["Uid"].split() == [str(SERVICE_UID)] * 4, status["Uid"]
            assert int(status["CapEff"], 16) == SERVICE_CAP_MASK, status["CapEff"]
            assert int(status["CapBnd"], 16) == SERVICE_CAP_MASK, status["CapBnd"]
            assert status["NoNewPrivs"] == "1"
        # Its control socket belongs to the service user, who can ask it for the status.
        control = d1.config_path.parent / "vipkeeper.sock"
        assert (control.stat().st_uid, control.stat().st_mode & 0o777) == (SERVICE_UID, 0o600)
        answer = net.run("d1", *command, "status", "--json", "--control-socket", str(control))
        states = {i["name"]: i["state"] for i in json.loads(answer)["instances"]}
        assert states == {"VI_LB": "MASTER"}, answer
        client = net.client()
        serving(
            client, {"rs1", "rs2"}, SETTLE, requests=20
        )  # nft rules and health checks work unprivileged

        net.hard_fail("d1")

        poll(ELECTION, lambda: _assert(d2.states()[-1:] == ["MASTER"], logs(daemons)))
        net.run("cli", "ip", "neigh", "flush", "to", "172.16.9.1")
        serving(client, {"rs1", "rs2"}, SETTLE, requests=20)
        assert d2.stop() == 0, logs([d2])
        assert errors_in(d2) == [], logs([d2])
        assert "removing virtual addresses" in d2.log()


def _assert(condition: bool, message: str) -> None:
    assert condition, message


# -- the service protocol ------------------------------------------------------------------------


class FakeManager:
    """The service manager's side of $NOTIFY_SOCKET: datagrams with their arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def close(self) -> None:
        self.socket.close()

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.partition("=")[::2] for line in data.decode().split("\n"))
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, key: str, within: float) -> dict[str, str]:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            fields = self.receive(left)
            if fields is not None and key in fields:
                return fields
        raise AssertionError(f"no {key} within {within} s; got {self.messages}")

    def receive_until(self, done: Callable[[], bool], within: float) -> None:
        """Receive until `done()` holds (it may already), for at most `within` seconds."""
        deadline = time.monotonic() + within
        while not done() and (left := deadline - time.monotonic()) > 0:
            self.receive(left)
        assert done(), f"not within {within} s; got {self.messages}"

    def statuses(self) -> list[str]:
        return [fields["STATUS"] for _, fields in self.messages if "STATUS" in fields]

    def beats(self, since: float) -> list[float]:
        return [at for at, fields in self.messages if "WATCHDOG" in fields and at >= since]


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[FakeManager]:
    fake = FakeManager(tmp_path / "notify.sock")
    yield fake
    fake.close()


def vrrp_sockets(lab: Lab, host_name: str) -> int:
    """Raw IPPROTO_VRRP sockets open in the host's namespace."""
    text = lab.run(lab.hosts[host_name], "cat", "/proc/net/raw").stdout
    protocol = f":{VRRP_PROTOCOL:04X}"
    return sum(1 for line in text.splitlines()[1:] if line.split()[1].endswith(protocol))


def test_ready_after_the_config_is_applied_watchdog_from_the_loop_reload_and_stop(
    lab: Lab, manager: FakeManager
) -> None:
    watchdog_usec = 2_000_000  # beats every second: a loaded machine still keeps well inside
    interval = watchdog_usec / 1e6 / 2
    net = Subnet.next()
    r1 = lab.add_host("r1", [net.v4_cidr(1)])
    directory = lab.workdir / "vipkeeper-r1"
    directory.mkdir(parents=True)
    config = directory / "keepalived.conf"
    config.write_text(instance_config(priority=200, vips=[net.vip4_cidr], version=3))
    log_path = directory / "vipkeeper.log"
    control = directory / "vipkeeper.sock"
    environment = [f"NOTIFY_SOCKET={manager.path}", f"WATCHDOG_USEC={watchdog_usec}"]
    with log_path.open("wb") as log:
        argv = ["env", *environment, *vipkeeper_argv(), "run", "-f", str(config),
                "--log-format", "json", "--control-socket", str(control)]  # fmt: skip
        process = lab.popen(r1, *argv, stdout=log, stderr=subprocess.STDOUT)
    daemon = Vipkeeper(lab, r1, process, config, log_path, directory / "none.pid", control)

    ready = manager.wait_for("READY", SETTLE)
    # Read at once: whatever READY promises must already be true.
    assert vrrp_sockets(lab, "r1") >= 1, "READY=1 before the VRRP socket was open"
    assert daemon.states()[:1] == ["BACKUP"], "READY=1 before the instance was started"
    assert control.is_socket(), "READY=1 before the control socket was listening"
    assert re.fullmatch(r"1 instance: 1 (BACKUP|MASTER)", ready["STATUS"]), ready

    # The running daemon's loop keeps beating at half the timeout, never leaving a gap that
    # would make the manager restart it.
    since = time.monotonic()
    manager.receive_until(lambda: len(manager.beats(since)) >= 5, SETTLE)
    beats = manager.beats(since)
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < watchdog_usec / 1e6, gaps
    assert min(gaps) > interval / 2, gaps  # not flooding the manager either

    poll(SETTLE, lambda: _assert(daemon.state() == "MASTER", describe([daemon])))
    manager.receive_until(lambda: "1 instance: 1 MASTER" in manager.statuses(), SETTLE)

    # What the unit's ExecReload runs: the daemon says RELOADING=1, then READY=1 when done.
    reloaded_by = lab.run(r1, *vipkeeper_argv(), "reload", "--control-socket", str(control))
    assert reloaded_by.returncode == 0, reloaded_by.stdout + reloaded_by.stderr
    reloading = manager.wait_for("RELOADING", SETTLE)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    reloaded = manager.wait_for("READY", SETTLE)
    assert reloaded["STATUS"] == "1 instance: 1 MASTER", reloaded

    process.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING", SETTLE)
    assert process.wait(SETTLE) == 0, describe([daemon])
    assert errors_in(daemon) == [], describe([daemon])
    # Children of the daemon never inherit the manager's socket.
    assert "NOTIFY_SOCKET" not in os.environ


# -- the unit file -------------------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd package"
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.MULTILINE)
    assert exec_start, "the unit has no ExecStart"
    installed = Path(exec_start.group(1))
    # Where the unit expects vipkeeper, this checkout's: a private mount namespace binds a
    # directory holding it over that one directory, so the real system is untouched.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / installed.name).symlink_to(vipkeeper_argv()[0])
    script = f'mount --bind "{bindir}" "{installed.parent}" && exec "{analyze}" verify "{UNIT}"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def test_systemd_sysusers_accepts_the_user_definition() -> None:
    sysusers = shutil.which("systemd-sysusers")
    assert sysusers, "systemd-sysusers is missing: install Debian's systemd package"
    result = subprocess.run(
        [sysusers, "--dry-run", str(SYSUSERS)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    try:
        pwd.getpwnam("vipkeeper")
    except KeyError:  # the usual case: the dry run shows what it would create
        assert "Creating user 'vipkeeper'" in result.stderr + result.stdout
    assert re.search(r"^User=vipkeeper$", UNIT.read_text(), re.MULTILINE)
