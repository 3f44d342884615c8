"""The chaos soak's LAN: the routers and the client, their daemons and the programs they run.

Owns: the LAN's shape (routers, priorities, track script, VRID), starting, killing and reading
each router's daemon (`Router`, one `DaemonRun` per start), and the HTTP server and prober.

The LAN (a `netns.Lab`): routers r1, r2, r3 (priorities 150, 120, 100; a track script `chk`, weight
-60, fails while the router's flag file exists) and a client, on one bridge. One VRRP instance,
v3, one VIP. Every router runs a small HTTP server on port 80 that answers with its name, so the
client's HTTP requests to the VIP reach whichever router holds it. The client pings the VIP
every 50 ms, makes an HTTP request every 100 ms and records every advert it hears (adverts.log
in the work directory, beside ping.log, http.log and each daemon's log: what explains a
violation). r3, the lowest router, is never killed: its daemon lives for the whole run and
carries the memory and file-descriptor trend.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vipkeeper.testing.daemons import (
    global_defs,
    instance_config,
    script_config,
    start_vipkeeper,
)
from vipkeeper.testing.netns import DaemonProcess, Host
from vipkeeper.testing.nsaddr import AddressReader

if TYPE_CHECKING:
    from vipkeeper.testing.chaos.soak import Soak

ADVERT_INT = 0.2  # seconds: the VRRP instance's advert_int unless a run asks otherwise
SCRIPT_INTERVAL = 1  # seconds: the track script's interval (keepalived reads whole seconds)
WEIGHT = -60
ROUTERS = (("r1", 150), ("r2", 120), ("r3", 100))
OBSERVER = "r3"  # never killed
CLIENT_HOST = 200
VRID = 51
PING_INTERVAL = 0.05  # seconds between the client's pings
HTTP_INTERVAL = 0.1  # seconds between the client's HTTP requests
HTTP_TIMEOUT = 1.5  # seconds: past TCP's first SYN retransmission (1 s) and a loaded host's stalls

# -- the programs in the namespaces ------------------------------------------------------------

HTTP_SERVER = r"""
import socket, sys, threading
name = sys.argv[1].encode()
def answer(conn):
    with conn:
        conn.settimeout(1.0)
        try:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
        except OSError:
            pass
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 80))
server.listen(64)
while True:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
"""

HTTP_PROBER = r"""
import json, socket, sys, time
vip, out, interval, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
with open(out, "a", buffering=1) as log:
    while True:
        start = time.time()
        ok, who, error = False, "", ""
        try:
            with socket.create_connection((vip, 80), timeout=timeout) as conn:
                conn.settimeout(timeout)
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            ok = data.startswith(b"HTTP/1.0 200")
            who = data.rpartition(b"\r\n\r\n")[2].decode(errors="replace")
            error = "" if ok else f"answer {data[:40]!r}"
        except OSError as exc:
            error = type(exc).__name__
        log.write(json.dumps([start, time.time(), ok, who, error]) + "\n")
        time.sleep(max(0.0, interval - (time.time() - start)))
"""

_KEEPALIVED_STATE = re.compile(r"\((\S+)\) Entering (\w+) STATE")
_KEEPALIVED_TROUBLE = re.compile(r"(?i)segfault|traceback|exited due to|core dump")


# -- one router ----------------------------------------------------------------------------


@dataclass
class DaemonRun:
    """One start of a router's daemon, until it exits or is killed."""

    process: DaemonProcess
    started: float
    state: str = "INITIALIZE"
    offset: int = 0
    pending: str = ""
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss KiB, fds)
    fd_targets: list[list[str]] = field(default_factory=list)  # what the fds were, per sample
    trouble: list[str] = field(default_factory=list)
    killed: bool = False
    in_election: float | None = None  # when its first state change was seen
    stale_seen: float | None = None  # last look (s after start) with the old VIP, not started


class Router:
    def __init__(self, soak: Soak, name: str, priority: int, address: int) -> None:
        self.soak = soak
        self.name = name
        self.priority = priority
        self.host: Host = soak.lab.add_host(name, [soak.net.v4_cidr(address)])
        self.address = soak.net.v4(address)
        self.flag = soak.lab.workdir / f"flag-{name}"
        self.flagged = False
        self.stopped = False
        self.runs: list[DaemonRun] = []
        self.reader = AddressReader(self.host.ns)
        self.config = (
            global_defs(name)
            + script_config(
                "chk", f"/usr/bin/test ! -e {self.flag}", interval=SCRIPT_INTERVAL, weight=WEIGHT
            )
            + instance_config(
                priority=priority,
                vips=[soak.net.vip4_cidr],
                vrid=VRID,
                version=3,
                advert_int=soak.advert_int,
                track_scripts=["chk"],
            )
        )
        soak.lab.spawn_python(self.host, HTTP_SERVER, name)

    @property
    def effective_priority(self) -> int:
        return self.priority + (WEIGHT if self.flagged else 0)

    @property
    def run(self) -> DaemonRun:
        return self.runs[-1]

    def start(self) -> None:
        if self.soak.daemon == "vipkeeper":
            process: DaemonProcess = start_vipkeeper(self.soak.lab, self.host, self.config)
        else:
            process = self.soak.lab.start_keepalived(self.host, self.config)
        self.runs.append(DaemonRun(process, time.time()))
        self.stopped = False

    def pids(self) -> list[int]:
        """The daemon's processes (keepalived: the parent and its VRRP child)."""
        if not self.runs or not self.run.process.running():
            return []
        pid = self.run.process.process.pid
        pids = [pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pids += [int(child) for child in children]
        return pids

    def alive(self) -> bool:
        return bool(self.runs) and self.run.process.running() and not self.stopped

    def signal_all(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """A crash: every process of the daemon frozen first (so none reacts to another's
        death), then SIGKILL. The VIP stays wherever it was."""
        pids = self.pids()
        for signum in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        self.run.killed = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run.process.process.wait(10)

    def holds(self) -> bool:
        return self.soak.net.vip4_cidr in self.reader.addresses()

    def read_log(self) -> None:
        """New lines of the current run's log: state changes and trouble."""
        run = self.run
        try:
            with run.process.log_path.open("rb") as handle:
                handle.seek(run.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        run.offset += len(chunk)
        text = run.pending + chunk.decode(errors="replace")
        lines = text.split("\n")
        run.pending = lines.pop()
        for line in lines:
            self._line(run, line)

    def _line(self, run: DaemonRun, line: str) -> None:
        if self.soak.daemon == "keepalived":
            found = _KEEPALIVED_STATE.search(line)
            if found:
                run.state = found.group(2)
                if run.in_election is None:
                    run.in_election = time.time()
            elif _KEEPALIVED_TROUBLE.search(line):
                run.trouble.append(line)
            return
        if not line.startswith("{"):
            if line.strip():
                run.trouble.append(line)  # a traceback or anything else not logged by us
            return
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            run.trouble.append(line)
            return
        if "new_state" in entry:
            run.state = entry["new_state"]
            if run.in_election is None:
                run.in_election = time.time()
        if entry.get("level") in ("error", "critical") or "exc" in entry:
            run.trouble.append(line)

    def sample_resources(self, now: float) -> None:
        pids = self.pids()
        if not pids or self.stopped:
            return
        rss = fds = 0
        try:
            for pid in pids:
                status = Path(f"/proc/{pid}/status").read_text()
                rss += next(
                    int(line.split()[1])
                    for line in status.splitlines()
                    if line.startswith("VmRSS:")
                )
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            targets = []
            for pid in pids:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except (OSError, StopIteration):
            return
        self.run.samples.append((now, rss, fds))
        self.run.fd_targets.append(sorted(targets))
