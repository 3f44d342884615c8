"""The chaos soak itself: `Soak` plays the rounds and watches the invariants; `run_soak` runs one.

Owns: the rounds (fault, heal, convergence, steady phase) and their bounds, the watcher that
checks the invariants every TICK, the client, log and resource checks, and the summary.

It never sleeps to wait for a condition without looking: every wait is a loop of ticks, and each
tick reads the routers' addresses and logs and checks the invariants.

Invariants (a breach is a violation, listed with its time and round):
  * after every heal, exactly one router holds the VIP, the live one with the highest effective
    priority (preemption on), within the round's bound: Master_Down_Interval + MARGIN, plus
    STARTUP_ALLOWANCE when a daemon was restarted and one script interval when a priority
    changed; and it stays so through the round's steady phase;
  * a live router whose daemon is in the election and not Master (BACKUP, FAULT) holds no VIP
    for longer than STATE_GRACE: a VIP the killed run left behind is gone before a restarted
    daemon's election (until its daemon has started, it may sit there: that time is a figure,
    `stale_vip_max`, and counts in the restart round's convergence bound);
  * the client's ping replies stop only inside a round's window (from the fault to its
    convergence), and an HTTP request fails only if it was under way during one (a request
    lasts at most HTTP_TIMEOUT); reloads and duplicated adverts open no window;
  * no traceback, error-level line or crash in any daemon log;
  * the long-lived daemon's RSS and open fds do not grow from the first quarter of the run to
    the last (RSS_GROWTH_KIB, FD_GROWTH).
"""

from __future__ import annotations

import compileall
import itertools
import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vipkeeper.core import timing
from vipkeeper.testing.chaos.faults import (
    DISTURBING,
    FAULTS,
    Fault,
    apply_fault,
    fault_sequence,
    has_netem,
)
from vipkeeper.testing.chaos.lan import (
    ADVERT_INT,
    CLIENT_HOST,
    HTTP_INTERVAL,
    HTTP_PROBER,
    HTTP_TIMEOUT,
    OBSERVER,
    PING_INTERVAL,
    ROUTERS,
    SCRIPT_INTERVAL,
    Router,
)
from vipkeeper.testing.daemons import Subnet
from vipkeeper.testing.netns import Lab

TICK = 0.05  # seconds between two looks at the routers
MARGIN = 1.0  # seconds of convergence bound beyond Master_Down_Interval (polling, load)
STARTUP_ALLOWANCE = 5.0  # seconds a restarted daemon may take to start (exec to election)
STATE_GRACE = 0.5  # seconds a non-Master may still hold the VIP (log line vs address change)
SETTLE = 1.0  # seconds the holders must stay right to count as converged
SLACK = 0.5  # seconds an outage may reach past its window (ARP refresh, a probe's timeout)
PING_GAP = 0.3  # a longer gap between ping replies is an outage
RESOURCE_EVERY = 2.0  # seconds between RSS/fd samples
RESOURCE_WARMUP = 20.0  # seconds of a daemon's life before its samples count
RSS_GROWTH_KIB = 4096  # last-quarter median minus first-quarter median, at most
FD_GROWTH = 2

_PING_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


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


def ping_outages(
    replies: Sequence[float], windows: Sequence[Window]
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The gaps longer than PING_GAP between the client's ping replies, and those of them that
    lie outside every window (from SLACK + PING_GAP before its fault to SLACK after its end)."""
    gaps = [(a, b) for a, b in itertools.pairwise(replies) if b - a > PING_GAP]
    stray = [
        (a, b)
        for a, b in gaps
        if not any(a >= w.start - SLACK - PING_GAP and b <= w.end + SLACK for w in windows)
    ]
    return gaps, stray


def failed_requests(
    http: Sequence[Sequence[Any]], windows: Sequence[Window]
) -> tuple[list[tuple[float, float, str]], list[tuple[float, float, str]]]:
    """The client's failed HTTP requests (rows of start, end, ok, who, error), and those of them
    that were under way during no window (to SLACK after its end): a fault can cut a request
    whenever it began, and a request lasts at most HTTP_TIMEOUT."""
    failed = [(start, end, error) for start, end, ok, _who, error in http if not ok]
    stray = [
        (start, end, error)
        for start, end, error in failed
        if not any(end >= w.start and start <= w.end + SLACK for w in windows)
    ]
    return failed, stray


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
        faults: Sequence[str] = FAULTS,
    ) -> None:
        if daemon not in ("vipkeeper", "keepalived"):
            raise ValueError(f"daemon {daemon!r}")
        self.lab, self.daemon, self.seed, self.out = lab, daemon, seed, out
        self.duration, self.advert_int = duration, advert_int
        self.faults = tuple(faults)
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
        for fault in fault_sequence(self.seed, self.faults):
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
        heal = apply_fault(self, fault)
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

    def check_client(self) -> dict[str, Any]:
        replies = []
        for line in self.ping_log.read_text(errors="replace").splitlines():
            found = _PING_REPLY.match(line)
            if found:
                replies.append(float(found.group(1)))
        http = [json.loads(line) for line in self.http_log.read_text().splitlines() if line]
        http = [row for row in http if row[0] >= self.probes_from]
        outages, stray_outages = ping_outages(replies, self.windows)
        failed, stray_failures = failed_requests(http, self.windows)
        for a, b in stray_outages:
            self.violate(f"ping outage {b - a:.2f} s at {self.where(a)} outside any fault window")
        for start, end, error in stray_failures:
            self.violate(f"HTTP request at {self.where(start)} failed after {end - start:.2f} s "
                         f"({error}) outside any fault window")  # fmt: skip
        if len(replies) < 2 or not http:
            self.violate("the client's probes recorded nothing")
        return {
            "ping_replies": len(replies),
            "ping_outages": len(outages),
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
        narrowed = f" FAULTS={','.join(self.faults)}" if self.faults != FAULTS else ""
        lines = [f"seed {self.seed}: replay with `make soak SEED={self.seed}{narrowed}`"]
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
    faults: Sequence[str] = FAULTS,
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
                    out=lambda text: print(text, file=sys.stderr, flush=True),
                    faults=faults)  # fmt: skip
        try:
            soak.play()
        finally:
            soak.close()
        return soak
