"""Chaos soak: routers on one bridge under a seeded random sequence of faults, with invariants.

What this owns: the fault catalogue (kill and restart, SIGSTOP/SIGCONT, link down, a VRRP-only
partition, VRRP loss, a slow link, reordered adverts, duplicated adverts, priority changes
through a track script, reloads), the generator that turns a seed into a fault sequence, the
watcher that checks the invariants every TICK, and the summary. The soak test (tests/soak) and
the soak bench (bench/soak.py, `make soak`) both run `Soak`; it drives vipkeeper or keepalived
with the same keepalived.conf text, so both daemons meet the same sequence on the same LAN.

It never sleeps to wait for a condition without looking: every wait is a loop of ticks, and each
tick reads the routers' addresses and logs and checks the invariants.

The LAN (a `netns.Lab`): routers r1, r2, r3 (priorities 150, 120, 100; a track script `chk`, weight
-60, fails while the router's flag file exists) and a client, on one bridge. One VRRP instance,
v3, one VIP. Every router runs a small HTTP server on port 80 that answers with its name, so the
client's HTTP requests to the VIP reach whichever router holds it. The client pings the VIP
every 50 ms, makes an HTTP request every 100 ms and records every advert it hears (adverts.log
in the work directory, beside ping.log, http.log and each daemon's log: what explains a
violation). r3, the lowest router, is never killed: its daemon lives for the whole run and
carries the memory and file-descriptor trend.

Invariants (a breach is a violation, listed with its time and round):
  * after every heal, exactly one router holds the VIP, the live one with the highest effective
    priority (preemption on), within the round's bound: Master_Down_Interval + MARGIN, plus
    STARTUP_ALLOWANCE when a daemon was restarted and one script interval when a priority
    changed; and it stays so through the round's steady phase;
  * a live router whose daemon is in the election and not Master (BACKUP, FAULT) holds no VIP
    for longer than STATE_GRACE: a VIP the killed run left behind is gone before a restarted
    daemon's election (until its daemon has started, it may sit there: that time is a figure,
    `stale_vip_max`, and counts in the restart round's convergence bound);
  * the client's ping replies and HTTP answers stop only inside a round's window (from the
    fault to its convergence); reloads and duplicated adverts open no window;
  * no traceback, error-level line or crash in any daemon log;
  * the long-lived daemon's RSS and open fds do not grow from the first quarter of the run to
    the last (RSS_GROWTH_KIB, FD_GROWTH).

Faults that sch_netem would give (loss, delay, reordering) are built from what every kernel
with nftables and HTB has, so a seed plays the same faults on any host: loss is an nftables
`numgen random` drop of VRRP on the bridge; delay is a tbf shaper on the target's link
(queueing delay for every burst; `Soak.netem` tells whether the kernel has sch_netem, and with
it, the slow link is netem delay/reorder instead); reordering sends a seeded share of the
target's VRRP packets (nftables `numgen random`, `meta priority`) into a slow HTB class that
holds each for about the seeded delay, longer than an advert interval, while the rest leave at
once, so adverts sent later arrive first; duplicates are an nftables `dup` of the Master's
adverts to every other port.

Why one module of over 800 lines: the faults, the watcher and the summary all read and write
the same round state (the routers, their daemon runs, the fault windows) against the same
bounds; split apart, each part would import every other.
"""

from __future__ import annotations

import compileall
import contextlib
import itertools
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vipkeeper.core import timing
from vipkeeper.testing.daemons import (
    Subnet,
    global_defs,
    instance_config,
    script_config,
    start_vipkeeper,
)
from vipkeeper.testing.netns import DaemonProcess, Host, Lab
from vipkeeper.testing.nsaddr import AddressReader

TICK = 0.05  # seconds between two looks at the routers
ADVERT_INT = 0.2  # seconds: the VRRP instance's advert_int unless a run asks otherwise
MARGIN = 1.0  # seconds of convergence bound beyond Master_Down_Interval (polling, load)
STARTUP_ALLOWANCE = 5.0  # seconds a restarted daemon may take to start (exec to election)
STATE_GRACE = 0.5  # seconds a non-Master may still hold the VIP (log line vs address change)
SETTLE = 1.0  # seconds the holders must stay right to count as converged
SLACK = 0.5  # seconds an outage may reach past its window (ARP refresh, a probe's timeout)
PING_INTERVAL = 0.05
PING_GAP = 0.3  # a longer gap between ping replies is an outage
HTTP_INTERVAL = 0.1
HTTP_TIMEOUT = 0.5
RESOURCE_EVERY = 2.0  # seconds between RSS/fd samples
RESOURCE_WARMUP = 20.0  # seconds of a daemon's life before its samples count
RSS_GROWTH_KIB = 4096  # last-quarter median minus first-quarter median, at most
FD_GROWTH = 2
SCRIPT_INTERVAL = 1  # seconds: the track script's interval (keepalived reads whole seconds)
WEIGHT = -60
ROUTERS = (("r1", 150), ("r2", 120), ("r3", 100))
OBSERVER = "r3"  # never killed
CLIENT_HOST = 200
VRID = 51

REORDER_FRAME_BITS = 46 * 8  # a v3 advert with one IPv4 VIP as HTB counts it (Ethernet frame)
# Reordering: a share of the target's VRRP packets each held for a delay longer than advert_int
# (so later adverts overtake it). The slow class lets one frame through per delay, so share x
# delay stays within half an advert interval: it keeps up, and a held packet waits about the
# delay rather than queueing behind the others (which would be loss, not reordering).
REORDER_PERCENT = (10, 20)  # percent, in steps of 5
REORDER_DELAY_MS = (250, 500)  # milliseconds, in steps of 50

FAULTS = (
    "kill", "stop", "link", "partition", "loss", "slow", "reorder", "dup", "priority", "reload"
)  # fmt: skip
# Faults after which the VIP may move; the others must leave the holders alone.
DISTURBING = {"kill", "stop", "link", "partition", "loss", "slow", "reorder", "priority"}


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    hold: float  # seconds the fault lasts before its heal
    steady: float  # seconds of steady phase after convergence
    peer: str = ""  # partition: the other side
    amount: int = 0  # loss, reorder: percent
    delay: int = 0  # reorder: milliseconds a held-back packet waits

    def describe(self) -> str:
        extra = f" peer={self.peer}" if self.peer else ""
        extra += f" amount={self.amount}" if self.amount else ""
        extra += f" delay={self.delay}ms" if self.delay else ""
        return f"{self.kind} {self.target}{extra} hold={self.hold:.2f} steady={self.steady:.2f}"


def fault_sequence(seed: int) -> Iterator[Fault]:
    """The faults of a soak, determined by the seed alone (never by timing)."""
    rng = random.Random(seed)
    names = [name for name, _ in ROUTERS]
    while True:
        kind = rng.choice(FAULTS)
        candidates = [n for n in names if n != OBSERVER] if kind == "kill" else names
        target = rng.choice(candidates)
        peer = rng.choice([n for n in names if n != target]) if kind == "partition" else ""
        amount = rng.randrange(10, 60, 10) if kind == "loss" else 0
        delay = 0
        if kind == "reorder":
            amount = rng.randrange(REORDER_PERCENT[0], REORDER_PERCENT[1] + 1, 5)
            delay = rng.randrange(REORDER_DELAY_MS[0], REORDER_DELAY_MS[1] + 1, 50)
        hold = {
            "kill": rng.uniform(0.3, 3.0),
            "stop": rng.uniform(0.2, 4.0),
            "link": rng.uniform(0.5, 3.0),
            "partition": rng.uniform(1.0, 4.0),
            "loss": rng.uniform(2.0, 5.0),
            "slow": rng.uniform(2.0, 4.0),
            "reorder": rng.uniform(2.0, 5.0),
            "dup": rng.uniform(2.0, 4.0),
            "priority": 0.0,
            "reload": 0.0,
        }[kind]
        steady = round(rng.uniform(1.0, 3.0), 2)
        yield Fault(kind, target, round(hold, 2), steady, peer, amount, delay)


def has_netem() -> bool:
    """Whether this kernel has sch_netem (a throwaway namespace tries to attach one)."""
    ns = f"vkhard-netem-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "a0", "type", "veth", "peer", "b0"],
                       check=True, capture_output=True)  # fmt: skip
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "a0",
                                "root", "netem", "delay", "1ms"], capture_output=True)  # fmt: skip
        return probe.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


# -- the programs in the namespaces ------------------------------------------------------------

HTTP_SERVER = r"""
import socket, sys
name = sys.argv[1].encode()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 80))
server.listen(64)
while True:
    conn, _ = server.accept()
    conn.settimeout(1.0)
    try:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
    except OSError:
        pass
    finally:
        conn.close()
"""

HTTP_PROBER = r"""
import json, socket, sys, time
vip, out, interval, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
with open(out, "a", buffering=1) as log:
    while True:
        start = time.time()
        ok, who = False, ""
        try:
            with socket.create_connection((vip, 80), timeout=timeout) as conn:
                conn.settimeout(timeout)
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            ok = data.startswith(b"HTTP/1.0 200")
            who = data.rpartition(b"\r\n\r\n")[2].decode(errors="replace")
        except OSError:
            pass
        log.write(json.dumps([start, time.time(), ok, who]) + "\n")
        time.sleep(max(0.0, interval - (time.time() - start)))
"""

_KEEPALIVED_STATE = re.compile(r"\((\S+)\) Entering (\w+) STATE")
_KEEPALIVED_TROUBLE = re.compile(r"(?i)segfault|traceback|exited due to|core dump")
_PING_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


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


# -- the soak -----------------------------------------------------------------------------------


@dataclass
class Violation:
    at: float
    round: int
    what: str


@dataclass
class Window:
    start: float
    end: float


@dataclass
class RoundResult:
    number: int
    fault: Fault
    applied: float
    healed: float
    expected: str
    convergence: float | None  # seconds from heal to a stable single right holder
    bound: float
    hit: bool  # the fault touched the router holding the VIP (or every router: loss)


class Soak:
    def __init__(
        self,
        lab: Lab,
        *,
        daemon: str,
        seed: int,
        duration: float,
        advert_int: float = ADVERT_INT,
        out: Callable[[str], None] = print,
    ) -> None:
        if daemon not in ("vipkeeper", "keepalived"):
            raise ValueError(f"daemon {daemon!r}")
        self.lab, self.daemon, self.seed, self.out = lab, daemon, seed, out
        self.duration, self.advert_int = duration, advert_int
        self.netem = has_netem()
        self.net = Subnet.next()
        self.routers: dict[str, Router] = {}
        self.violations: list[Violation] = []
        self.windows: list[Window] = []
        self.rounds: list[RoundResult] = []
        self.round_number = 0
        self._next_sample = 0.0
        self._wrong_since: dict[str, float] = {}
        self._reported: set[tuple[str, int]] = set()
        self._steady_expected: str | None = None
        self.started = time.time()

    # -- set-up ---------------------------------------------------------------------------

    def build(self) -> None:
        for index, (name, priority) in enumerate(ROUTERS, start=1):
            self.routers[name] = Router(self, name, priority, index)
        self.client = self.lab.add_host("client", [self.net.v4_cidr(CLIENT_HOST)])
        for router in self.routers.values():
            router.start()
        top = self.expected_holder()
        self.wait_converged(time.time(), bound=STARTUP_ALLOWANCE + 10, expected=top)
        if sorted(self.holders()) != [top]:
            raise RuntimeError(f"{self.daemon}: the LAN did not settle on {top}\n{self.logs()}")
        work = self.lab.workdir
        self.ping_log = work / "ping.log"
        self.http_log = work / "http.log"
        self.http_log.unlink(missing_ok=True)  # the prober appends
        with self.ping_log.open("wb") as handle:
            self.lab.popen(self.client, "ping", "-D", "-n", "-i", f"{PING_INTERVAL:g}",
                           self.net.vip4, stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        self.lab.spawn_python(self.client, HTTP_PROBER, self.net.vip4, str(self.http_log),
                              f"{HTTP_INTERVAL:g}", f"{HTTP_TIMEOUT:g}")  # fmt: skip
        # Every VRRP packet the client hears, one line each: kernel receive time, source,
        # priority. Not checked: it is there to explain a violation (who advertised what, when).
        with (work / "adverts.log").open("w") as handle:
            self.lab.popen(self.client, sys.executable, "-m", "vipkeeper.testing.adverts",
                           self.net.v4(CLIENT_HOST), stdout=handle)  # fmt: skip
        self.probes_from = time.time() + 1.0  # the probers' first answers
        self.watch(1.0, expected=top)

    # -- observation ----------------------------------------------------------------------

    def holders(self) -> list[str]:
        return [name for name, router in self.routers.items() if router.holds()]

    def expected_holder(self) -> str:
        return max(self.routers.values(), key=lambda r: r.effective_priority).name

    def violate(self, what: str, key: tuple[str, int] | None = None) -> None:
        if key is not None:
            if key in self._reported:
                return
            self._reported.add(key)
        what = f"{what} (t+{time.time() - self.started:.1f} s)"
        self.violations.append(Violation(time.time(), self.round_number, what))
        self.out(f"  VIOLATION round {self.round_number}: {what}")

    def tick(self) -> list[str]:
        """One look at everything; checks the invariants that hold at every moment."""
        now = time.time()
        found = []
        for name, router in self.routers.items():
            router.read_log()
            holds = router.holds()
            if holds:
                found.append(name)
            run = router.run
            if not router.alive() or not holds or run.state == "MASTER":
                for state in ("BACKUP", "FAULT", "INITIALIZE"):
                    self._wrong_since.pop(f"{name} {state}", None)
                continue
            if run.state == "INITIALIZE":
                # A restarted daemon that has not started yet cannot act: the killed run's VIP
                # may sit there until it removes it, before its election (its start-up time).
                run.stale_seen = now - run.started
                continue
            since = self._wrong_since.setdefault(f"{name} {run.state}", now)
            if now - since > STATE_GRACE:
                self.violate(
                    f"{name} holds the VIP in state {run.state} for {now - since:.2f} s",
                    key=(name, int(since * 1000)),
                )
        if self._steady_expected is not None and found != [self._steady_expected]:
            self.violate(
                f"steady phase: VIP held by {found}, expected [{self._steady_expected}]",
                key=("steady", self.round_number),
            )
        if now >= self._next_sample:
            self._next_sample = now + RESOURCE_EVERY
            for router in self.routers.values():
                router.sample_resources(now)
        return found

    def watch(self, seconds: float, *, expected: str | None = None) -> None:
        """Tick for `seconds`; with `expected`, the holders must be exactly that router."""
        self._steady_expected = expected
        end = time.time() + seconds
        try:
            while time.time() < end:
                self.tick()
                time.sleep(TICK)
        finally:
            self._steady_expected = None

    def wait_converged(self, healed: float, *, bound: float, expected: str) -> float | None:
        """Seconds from `healed` to the start of a SETTLE-long run of holders == [expected];
        None if that did not happen within bound + SETTLE + a few seconds."""
        give_up = healed + bound + SETTLE + 5.0
        stable_from: float | None = None
        while time.time() < give_up:
            now = time.time()
            found = self.tick()
            if found == [expected]:
                stable_from = stable_from or now
                if now - stable_from >= SETTLE:
                    return stable_from - healed
            else:
                stable_from = None
            time.sleep(TICK)
        return None

    # -- faults ---------------------------------------------------------------------------

    def _nft(self, host: Host, script: str) -> None:
        subprocess.run(["ip", "netns", "exec", host.ns, "nft", script], check=True,
                       capture_output=True, text=True, timeout=30)  # fmt: skip

    def _bridge_nft(self, script: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.lab.bridge_ns, "nft", script], check=True,
                       capture_output=True, text=True, timeout=30)  # fmt: skip

    def apply(self, fault: Fault) -> Callable[[], None]:
        """Inject `fault`; the function that heals it."""
        router = self.routers[fault.target]
        host = router.host
        if fault.kind == "kill":
            router.kill()

            def restart() -> None:
                router.start()

            return restart
        if fault.kind == "stop":
            router.signal_all(signal.SIGSTOP)
            router.stopped = True

            def resume() -> None:
                router.signal_all(signal.SIGCONT)
                router.stopped = False

            return resume
        if fault.kind == "link":
            self.lab.cut(host)
            return lambda: self.lab.restore(host)
        if fault.kind == "partition":
            peer = self.routers[fault.peer]
            for one, other in ((router, peer), (peer, router)):
                self._nft(one.host, "add table inet vkchaos; "
                          "add chain inet vkchaos input { type filter hook input priority 0; }; "
                          f"add rule inet vkchaos input ip saddr {other.address} "
                          "ip protocol vrrp drop")  # fmt: skip

            def unpartition() -> None:
                for one in (router, peer):
                    self._nft(one.host, "delete table inet vkchaos")

            return unpartition
        if fault.kind == "loss":
            self._bridge_nft("add table bridge vkchaos; "
                             "add chain bridge vkchaos loss "
                             "{ type filter hook forward priority 0; }; "
                             "add rule bridge vkchaos loss ip protocol vrrp "
                             f"numgen random mod 100 < {fault.amount} drop")  # fmt: skip
            return lambda: self._bridge_nft("delete table bridge vkchaos")
        if fault.kind == "slow":
            if self.netem:
                shaper = ["netem", "delay", "100ms", "50ms", "reorder", "25%"]
            else:
                shaper = ["tbf", "rate", "16kbit", "burst", "1600", "latency", "300ms"]
            self.lab.run(host, "tc", "qdisc", "add", "dev", host.ifname, "root", *shaper)

            def unshape() -> None:
                self.lab.run(host, "tc", "qdisc", "del", "dev", host.ifname, "root")

            return unshape
        if fault.kind == "reorder":
            return self._reorder(host, fault)
        if fault.kind == "dup":
            master = self.expected_holder()
            port = self.routers[master].host.port
            others = [r.host.port for n, r in self.routers.items() if n != master]
            dups = "; ".join(
                f"add rule netdev vkchaos copies ip protocol vrrp dup to {other}"
                for other in others
            )
            self._bridge_nft("add table netdev vkchaos; "
                             "add chain netdev vkchaos copies "
                             f"{{ type filter hook ingress device {port} priority 0; }}; "
                             + dups)  # fmt: skip
            return lambda: self._bridge_nft("delete table netdev vkchaos")
        if fault.kind == "priority":
            router.flagged = not router.flagged
            if router.flagged:
                router.flag.touch()
            else:
                router.flag.unlink(missing_ok=True)
            return lambda: None
        if fault.kind == "reload":
            # keepalived's parent re-reads and restarts its VRRP child; vipkeeper reloads in place.
            pids = router.pids()
            if pids:
                os.kill(pids[0], signal.SIGHUP)
            return lambda: None
        raise ValueError(fault.kind)

    def _reorder(self, host: Host, fault: Fault) -> Callable[[], None]:
        """`fault.amount` percent of the host's outgoing VRRP packets wait about `fault.delay`
        ms in a slow HTB class (one frame per delay); everything else leaves at once."""
        rate = max(8, REORDER_FRAME_BITS * 1000 // fault.delay)  # bit/s
        tc = ["tc", "qdisc", "add", "dev", host.ifname, "root", "handle", "1:", "htb",
              "default", "10"]  # fmt: skip
        self.lab.run(host, *tc)
        for classid, speed in (("1:10", "10gbit"), ("1:20", f"{rate}bit")):
            self.lab.run(host, "tc", "class", "add", "dev", host.ifname, "parent", "1:",
                         "classid", classid, "htb", "rate", speed, "ceil", speed,
                         *(["burst", "1", "cburst", "1"] if classid == "1:20" else []))  # fmt: skip
        self._nft(host, "add table inet vkreorder; "
                  "add chain inet vkreorder out { type filter hook output priority 0; }; "
                  "add rule inet vkreorder out ip protocol vrrp "
                  f"numgen random mod 100 < {fault.amount} meta priority set 1:20")  # fmt: skip

        def unreorder() -> None:
            self._nft(host, "delete table inet vkreorder")
            self.lab.run(host, "tc", "qdisc", "del", "dev", host.ifname, "root")

        return unreorder

    def bound(self, fault: Fault) -> float:
        expected = self.routers[self.expected_holder()]
        bound = MARGIN + timing.master_down_interval(
            version=3, priority=expected.effective_priority, master_adver_interval=self.advert_int
        )
        if fault.kind == "kill":
            bound += STARTUP_ALLOWANCE
        if fault.kind == "priority":
            bound += 2 * SCRIPT_INTERVAL
        return bound

    # -- the run --------------------------------------------------------------------------

    def play(self) -> None:
        self.build()
        self.started = time.time()
        end = self.started + self.duration
        self.out(
            f"soak {self.daemon}: seed {self.seed}, {self.duration:g} s, advert_int "
            f"{self.advert_int:g}, routers {', '.join(f'{n}={p}' for n, p in ROUTERS)}, "
            f"sch_netem {'yes' if self.netem else 'no'}"
        )
        for fault in fault_sequence(self.seed):
            if time.time() >= end:
                break
            self.round_number += 1
            self.play_round(fault)
        self.finish()

    def play_round(self, fault: Fault) -> None:
        disturbing = fault.kind in DISTURBING
        holder = self.expected_holder()
        hit = disturbing and (holder in (fault.target, fault.peer) or fault.kind == "loss")
        applied = time.time()
        heal = self.apply(fault)
        if fault.hold:
            self.watch(fault.hold, expected=None if disturbing else self.expected_holder())
        heal()
        healed = time.time()
        expected = self.expected_holder()
        bound = self.bound(fault)
        if disturbing:
            convergence = self.wait_converged(healed, bound=bound, expected=expected)
            end = healed + convergence + SETTLE if convergence is not None else time.time()
            self.windows.append(Window(applied, end))
            if convergence is None:
                self.violate(f"no single holder {expected} within {bound:.2f} s after the heal")
            elif convergence > bound:
                self.violate(f"{expected} alone held the VIP {convergence:.2f} s after the heal, "
                             f"bound {bound:.2f} s")  # fmt: skip
        else:
            convergence = 0.0
        self.rounds.append(
            RoundResult(
                self.round_number, fault, applied, healed, expected, convergence, bound, hit
            )
        )
        shown = f"{convergence:.2f} s" if convergence is not None else "never"
        self.out(f"  round {self.round_number}: {fault.describe()} -> {expected} in {shown}")
        self.watch(fault.steady, expected=expected)

    # -- the end --------------------------------------------------------------------------

    def where(self, moment: float) -> str:
        """`t+S s, round N (fault)` for a moment of the run."""
        current = [r for r in self.rounds if r.applied <= moment]
        text = f"t+{moment - self.started:.2f} s"
        if current:
            last = current[-1]
            text += f", round {last.number} ({last.fault.kind} {last.fault.target}"
            text += f", applied t+{last.applied - self.started:.2f} s)"
        return text

    def in_window(self, start: float, end: float) -> bool:
        return any(
            start >= w.start - SLACK - PING_GAP and end <= w.end + SLACK for w in self.windows
        )

    def check_client(self) -> dict[str, Any]:
        replies = []
        for line in self.ping_log.read_text(errors="replace").splitlines():
            found = _PING_REPLY.match(line)
            if found:
                replies.append(float(found.group(1)))
        ping_outages = [(a, b) for a, b in itertools.pairwise(replies) if b - a > PING_GAP]
        for a, b in ping_outages:
            if not self.in_window(a, b):
                self.violate(
                    f"ping outage {b - a:.2f} s at {self.where(a)} outside any fault window"
                )
        http = [json.loads(line) for line in self.http_log.read_text().splitlines() if line]
        failed = [(s, e) for s, e, ok, _who in http if not ok and s >= self.probes_from]
        for start, end in failed:
            if not self.in_window(start, end):
                self.violate(f"HTTP request at {self.where(start)} failed outside any fault window")
        if len(replies) < 2 or not http:
            self.violate("the client's probes recorded nothing")
        return {
            "ping_replies": len(replies),
            "ping_outages": len(ping_outages),
            "http_requests": len(http),
            "http_failed": len(failed),
        }

    def check_resources(self) -> dict[str, Any]:
        """The observer's daemon lived the whole run: its RSS and fds must not trend up."""
        run = self.routers[OBSERVER].runs[0]
        samples = [s for s in run.samples if s[0] - run.started >= RESOURCE_WARMUP]
        if len(samples) < 8:
            return {"resource_samples": len(samples)}
        quarter = len(samples) // 4
        first, last = samples[:quarter], samples[-quarter:]
        rss_first = statistics.median(s[1] for s in first)
        rss_last = statistics.median(s[1] for s in last)
        fds_first = statistics.median(s[2] for s in first)
        fds_last = statistics.median(s[2] for s in last)
        if rss_last - rss_first > RSS_GROWTH_KIB:
            self.violate(f"{OBSERVER}: RSS grew from {rss_first} to {rss_last} KiB")
        if fds_last - fds_first > FD_GROWTH:
            kinds = Counter(re.sub(r"\[\d+\]", "", t) for t in run.fd_targets[-1])
            kinds.subtract(
                re.sub(r"\[\d+\]", "", t) for t in run.fd_targets[len(run.samples) - len(samples)]
            )
            grown = {k: v for k, v in kinds.items() if v}
            self.violate(f"{OBSERVER}: open fds grew from {fds_first} to {fds_last} ({grown})")
        return {
            "resource_samples": len(samples),
            "rss_kib": [rss_first, rss_last],
            "fds": [fds_first, fds_last],
        }

    def finish(self) -> None:
        for router in self.routers.values():
            router.read_log()
            for run in router.runs:
                if not run.killed and not run.process.running():
                    self.violate(f"{router.name}: daemon exited by itself "
                                 f"({run.process.process.returncode})")  # fmt: skip
                for line in run.trouble:
                    self.violate(f"{router.name} log: {line[:300]}")
        self.client_figures = self.check_client()
        self.resource_figures = self.check_resources()

    def summary(self) -> dict[str, Any]:
        times = sorted(r.convergence for r in self.rounds
                       if r.convergence is not None and r.hit)  # fmt: skip
        # exec to the first state change seen in the log (read every TICK), for restarts
        starts = [run.in_election - run.started for r in self.routers.values()
                  for run in r.runs[1:] if run.in_election is not None]  # fmt: skip
        stale = [run.stale_seen for r in self.routers.values() for run in r.runs
                 if run.stale_seen is not None]  # fmt: skip
        figures: dict[str, Any] = {
            "daemon": self.daemon,
            "seed": self.seed,
            "rounds": len(self.rounds),
            "hit_rounds": len(times),
            "violations": len(self.violations),
            "convergence_median": statistics.median(times) if times else None,
            "convergence_p95": times[min(len(times) - 1, int(0.95 * len(times)))]
            if times
            else None,
            "convergence_max": times[-1] if times else None,
            "restarts": sum(len(r.runs) - 1 for r in self.routers.values()),
            "startup_median": statistics.median(starts) if starts else None,
            "startup_max": max(starts) if starts else None,
            "stale_vip_max": max(stale) if stale else None,
            **self.client_figures,
            **self.resource_figures,
        }
        by_kind: dict[str, list[float]] = {}
        for r in self.rounds:
            if r.convergence is not None and r.hit:
                by_kind.setdefault(r.fault.kind, []).append(r.convergence)
        figures["median_by_fault"] = {k: statistics.median(v) for k, v in sorted(by_kind.items())}
        return figures

    def summary_line(self) -> str:
        s = self.summary()

        def sec(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        return (
            f"{self.daemon}: violations: {s['violations']}, convergence median/p95/max "
            f"{sec(s['convergence_median'])}/{sec(s['convergence_p95'])}/"
            f"{sec(s['convergence_max'])} s (over the {s['hit_rounds']} rounds that hit the "
            f"Master), rounds: {s['rounds']}"
        )

    def replay_text(self) -> str:
        """What a failure prints: the seed and the faults played, so `make soak SEED=` replays."""
        lines = [f"seed {self.seed}: replay with `make soak SEED={self.seed}`"]
        lines += [f"  {r.number} (t+{r.applied - self.started:.2f} s): {r.fault.describe()}"
              for r in self.rounds]  # fmt: skip
        lines += [f"  violation at round {v.round}: {v.what}" for v in self.violations]
        return "\n".join(lines)

    def logs(self) -> str:
        parts = []
        for router in self.routers.values():
            for run in router.runs:
                parts.append(f"--- {self.daemon} {router.name} ---\n{run.process.log()[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for router in self.routers.values():
            router.reader.close()


def run_soak(
    daemon: str,
    *,
    seed: int,
    duration: float,
    advert_int: float = ADVERT_INT,
    workdir: Path | None = None,
) -> Soak:
    """Build a LAN, play the soak, tear the LAN down; the finished Soak (figures, violations).

    `workdir` keeps every daemon's log and the client's ping and HTTP records after the run
    (a temporary directory, removed, when None).

    vipkeeper's modules are compiled to bytecode first, so a restarted daemon starts as an
    installed one does (a wheel's install compiles them) even where PYTHONDONTWRITEBYTECODE is
    set for the test run.
    """
    import vipkeeper

    compileall.compile_dir(str(Path(vipkeeper.__file__).parent), quiet=1)
    with Lab(workdir=workdir) as lab:
        soak = Soak(lab, daemon=daemon, seed=seed, duration=duration, advert_int=advert_int,
                    out=lambda text: print(text, file=sys.stderr, flush=True))  # fmt: skip
        try:
            soak.play()
        finally:
            soak.close()
        return soak
