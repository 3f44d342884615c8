"""`make watch`: the lab's live view, a terminal dashboard drawn with rich.

Owns: what the view shows (per director its VRRP state, priority and whether it holds the VIP;
the client's ARP entry for the VIP; a rolling HTTP probe from the client; each real server's
health as the MASTER's checker sees it; the last transitions with their reasons), how often it
asks (every source in its own thread, so a slow or frozen node never holds up the others) and
the transitions it derives from consecutive snapshots.  Sources are small objects, so the view
can be driven by fakes.  Must never: read a log (directors are read through
`vipkeeper status --json`, the lab through the harness probes); change the lab.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harness.checks import healthy, instance_of
from harness.lab import Lab
from harness.probes import PROBE_DIR, Request, client_vip_mac, install_script, vip_url

POLL_INTERVAL = 0.2  # s between two reads of one source
HTTP_WINDOW = 5.0  # s of requests the HTTP figures are computed over
TRANSITIONS_SHOWN = 8


# --- what the view shows ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DirectorView:
    name: str
    container: str  # Docker's state: running, paused, exited, ...
    state: str | None = None  # VRRP state from `vipkeeper status --json`; None: no answer
    priority: int | None = None  # effective priority
    holds_vip: bool | None = None
    reason: str | None = None  # of its last transition
    real_servers: dict[str, bool | None] = field(default_factory=dict)  # its checker's view


@dataclass(frozen=True, kw_only=True)
class ArpView:
    mac: str | None  # the client's neighbour entry for the VIP
    node: str | None  # the lab node owning that MAC


@dataclass(frozen=True, kw_only=True)
class HttpView:
    rate: float  # requests per second over the window
    failures: int
    latency_ms: float | None  # median of the answered ones
    last_server: str | None
    share: dict[str, float]  # real server -> fraction of the answered requests


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    at: float
    vip: str
    directors: tuple[DirectorView, ...]
    arp: ArpView
    http: HttpView
    real_servers: tuple[str, ...]

    @property
    def holders(self) -> list[str]:
        return [d.name for d in self.directors if d.holds_vip]

    def health(self) -> dict[str, bool | None]:
        """Real server -> healthy, as the (first) VIP holder's checker sees it."""
        views = [d for d in self.directors if d.holds_vip and d.real_servers]
        source = views[0].real_servers if views else {}
        return {rs: source.get(rs) for rs in self.real_servers}


# --- sources ------------------------------------------------------------------------------------
class DirectorSource(Protocol):
    def read(self, director: str) -> DirectorView: ...


class ArpSource(Protocol):
    def read(self) -> ArpView: ...


class HttpSource(Protocol):
    def window(self, since: float) -> list[Request]: ...

    def close(self) -> None: ...


class LabDirectors:
    """One `docker exec` per read: `vipkeeper status --json` and the front interface's
    addresses together; a frozen director's addresses are read from its network namespace."""

    SEPARATOR = "--- addresses ---"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def read(self, director: str) -> DirectorView:
        topo = self.lab.topology
        container = self.lab.state(director)
        ip = f"ip -o -4 addr show dev {topo.front_if(director)}"
        if container == "paused":
            result = self.lab.netns_run(director, ip)
            holds = f" {topo.vip}/" in result.output if result.ok else None
            return DirectorView(name=director, container=container, holds_vip=holds)
        if container != "running":
            return DirectorView(name=director, container=container, holds_vip=False)
        script = f"vipkeeper status --json 2>/dev/null; echo '{self.SEPARATOR}'; {ip}"
        result = self.lab.exec(director, ["sh", "-c", script], timeout=5)
        status_text, _, addresses = result.output.partition(self.SEPARATOR)
        try:
            status = json.loads(status_text) if status_text.strip() else None
        except ValueError:
            status = None
        instance = instance_of(status)
        last = (instance or {}).get("last_transition") or {}
        health: dict[str, bool | None] = {}
        for vs in (status or {}).get("virtual_servers") or []:
            for rs in vs.get("real_servers") or []:
                name = topo.server_of_address(str(rs.get("address")))
                if name is not None:
                    health[name] = healthy(rs)
        return DirectorView(
            name=director,
            container=container,
            state=(instance or {}).get("state"),
            priority=(instance or {}).get("effective_priority"),
            holds_vip=(f" {topo.vip}/" in addresses) if addresses else None,
            reason=last.get("reason"),
            real_servers=health,
        )


class LabArp:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def read(self) -> ArpView:
        mac = client_vip_mac(self.lab)
        return ArpView(mac=mac, node=self.lab.service_of_mac(mac) if mac else None)


class LabHttp:
    """The harness's HTTP prober run in the client with its records streamed back (one new
    connection every `interval` s); restarted if its stream ends (the client was killed)."""

    def __init__(self, lab: Lab, *, interval: float = 0.1, timeout: float = 1.0) -> None:
        self.lab, self.interval, self.timeout = lab, interval, timeout
        self.requests: deque[Request] = deque(maxlen=2000)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stop_file = f"{PROBE_DIR}/watch-{uuid.uuid4().hex[:8]}.stop"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _stream(self) -> Iterator[bytes]:
        client = self.lab.topology.client.name
        path = install_script(self.lab, "http_prober.py")
        argv = [
            "python3",
            "-u",
            path,
            vip_url(self.lab),
            "/dev/stdout",
            self._stop_file,
            str(self.interval),
            str(self.timeout),
            "10",
            "86400",
            "0",  # no keep-alive streams
        ]
        api = self.lab.docker.api
        exec_id = api.exec_create(self.lab.container(client).id, argv, stdout=True, stderr=False)
        return iter(api.exec_start(exec_id, stream=True))

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                buffer = b""
                for chunk in self._stream():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        self._add(line)
                    if self._closed.is_set():
                        return
            except Exception:  # the client is down or between states: try again shortly
                pass
            self._closed.wait(1.0)

    def _add(self, line: bytes) -> None:
        try:
            row = json.loads(line)
        except ValueError:
            return
        if not row.get("done"):
            with self._lock:
                self.requests.append(Request(**row))

    def window(self, since: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.start >= since]

    def close(self) -> None:
        self._closed.set()
        client = self.lab.topology.client.name
        if self.lab.state(client) == "running":
            self.lab.exec(client, ["touch", self._stop_file])


def http_view(requests: list[Request], window: float) -> HttpView:
    answered = [r for r in requests if r.ok]
    servers = [r.server for r in answered if r.server]
    share = {s: servers.count(s) / len(servers) for s in sorted(set(servers))}
    latencies = [(r.end - r.start) * 1000 for r in answered]
    last = max(answered, key=lambda r: r.start).server if answered else None
    return HttpView(
        rate=len(requests) / window,
        failures=len(requests) - len(answered),
        latency_ms=statistics.median(latencies) if latencies else None,
        last_server=last,
        share=share,
    )


# --- the model: sources polled in threads, snapshots, transitions -------------------------------
class Watch:
    def __init__(
        self,
        *,
        vip: str,
        directors: tuple[str, ...],
        real_servers: tuple[str, ...],
        director_source: DirectorSource,
        arp_source: ArpSource,
        http_source: HttpSource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vip, self.director_names, self.real_servers = vip, directors, real_servers
        self.director_source, self.arp_source, self.http_source = (
            director_source,
            arp_source,
            http_source,
        )
        self.clock = clock
        self.directors = {d: DirectorView(name=d, container="?") for d in directors}
        self.arp = ArpView(mac=None, node=None)
        self.transitions: deque[tuple[float, str]] = deque(maxlen=TRANSITIONS_SHOWN)
        self._last: Snapshot | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # polling
    def poll_once(self) -> None:
        """Read every source once, in this thread (the tests' way in)."""
        for d in self.director_names:
            self._read_director(d)
        self._read_arp()

    def _read_director(self, director: str) -> None:
        try:
            self.directors[director] = self.director_source.read(director)
        except Exception as exc:  # a container between states: say so, ask again
            self.directors[director] = replace(
                self.directors[director], state=None, reason=f"unreadable: {exc}"
            )

    def _read_arp(self) -> None:
        try:
            self.arp = self.arp_source.read()
        except Exception:
            self.arp = ArpView(mac=None, node=None)

    def start(self) -> Watch:
        jobs: list[Callable[[], None]] = [self._read_arp]
        jobs += [lambda d=d: self._read_director(d) for d in self.director_names]  # type: ignore[misc]
        for job in jobs:
            thread = threading.Thread(target=self._loop, args=(job,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, job: Callable[[], None]) -> None:
        while not self._stop.is_set():
            job()
            self._stop.wait(POLL_INTERVAL)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.http_source.close()

    # snapshots
    def snapshot(self) -> Snapshot:
        now = self.clock()
        snap = Snapshot(
            at=now,
            vip=self.vip,
            directors=tuple(self.directors[d] for d in self.director_names),
            arp=self.arp,
            http=http_view(self.http_source.window(now - HTTP_WINDOW), HTTP_WINDOW),
            real_servers=self.real_servers,
        )
        self._note_transitions(self._last, snap)
        self._last = snap
        return snap

    def _note_transitions(self, old: Snapshot | None, new: Snapshot) -> None:
        if old is None:
            return
        for before, after in zip(old.directors, new.directors, strict=True):
            was, now = _director_word(before), _director_word(after)
            if was != now:
                why = f" ({after.reason})" if after.reason and after.state else ""
                self.transitions.append((new.at, f"{after.name}: {was} -> {now}{why}"))
        if old.holders != new.holders:
            self.transitions.append((new.at, f"VIP: {', '.join(new.holders) or 'nobody'}"))
        if old.arp.mac != new.arp.mac:
            where = new.arp.node or "unknown node"
            self.transitions.append((new.at, f"client ARP: VIP -> {new.arp.mac} ({where})"))
        for rs, ok in new.health().items():
            if old.health().get(rs) != ok and ok is not None:
                self.transitions.append(
                    (new.at, f"{rs}: {'back in the pool' if ok else 'drained (check failed)'}")
                )


def _director_word(view: DirectorView) -> str:
    if view.container not in ("running", "?"):
        return view.container  # exited, paused, ...
    return view.state or "no status"


# --- drawing ------------------------------------------------------------------------------------
STATE_STYLE = {"MASTER": "bold green", "BACKUP": "cyan", "FAULT": "bold red"}


def render(snap: Snapshot, transitions: list[tuple[float, str]]) -> RenderableType:
    holders = ", ".join(snap.holders) or "nobody"
    split = len(snap.holders) > 1
    title = Text(f"VIP {snap.vip} held by: {holders}", style="bold red" if split else "bold")
    if split:
        title.append("   SPLIT BRAIN", style="bold red")
    title.append(time.strftime("   %H:%M:%S", time.localtime(snap.at)), style="dim")

    directors = Table(title="directors", expand=True)
    for column in ("director", "container", "VRRP state", "priority", "VIP", "last reason"):
        directors.add_column(column)
    for d in snap.directors:
        directors.add_row(
            d.name,
            d.container,
            Text(d.state or "-", style=STATE_STYLE.get(d.state or "", "")),
            "-" if d.priority is None else str(d.priority),
            {True: "yes", False: "no", None: "?"}[d.holds_vip],
            d.reason or "",
        )

    client = Table(title="client", expand=True)
    client.add_column("ARP entry for the VIP")
    client.add_column("HTTP (last 5 s)")
    arp = f"{snap.arp.mac} -> {snap.arp.node}" if snap.arp.mac else "none (not resolved)"
    h = snap.http
    latency = "-" if h.latency_ms is None else f"{h.latency_ms:.1f} ms"
    share = ", ".join(f"{s} {p:.0%}" for s, p in h.share.items()) or "-"
    http = (
        f"{h.rate:.1f} req/s, {h.failures} failed, median {latency}\n"
        f"last answer: {h.last_server or '-'};  share: {share}"
    )
    client.add_row(Text(arp, style="bold red" if snap.arp.node in snap.real_servers else ""), http)

    servers = Table(title="real servers (the MASTER's checker)", expand=True)
    servers.add_column("real server")
    servers.add_column("health")
    for rs, ok in snap.health().items():
        word = {True: ("in the pool", "green"), False: ("FAILED, drained", "bold red")}.get(
            ok, ("?", "")
        )
        servers.add_row(rs, Text(word[0], style=word[1]))

    log = Table(title="last transitions", expand=True, show_header=False)
    log.add_column("time", style="dim", width=9)
    log.add_column("what")
    for at, text in reversed(transitions):
        log.add_row(time.strftime("%H:%M:%S", time.localtime(at)), text)
    return Group(title, directors, client, servers, log)


def render_text(snap: Snapshot, transitions: list[tuple[float, str]], width: int = 110) -> str:
    """The view as plain text (what a terminal shows, without colours)."""
    console = Console(record=True, width=width, file=_Discard(), color_system=None)
    console.print(render(snap, transitions))
    return console.export_text()


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def lab_watch(lab: Lab, http: HttpSource | None = None) -> Watch:
    topo = lab.topology
    return Watch(
        vip=topo.vip,
        directors=topo.director_names,
        real_servers=topo.real_server_names,
        director_source=LabDirectors(lab),
        arp_source=LabArp(lab),
        http_source=http or LabHttp(lab),
    )


def run_watch(lab: Lab, *, refresh: float = 4.0, seconds: float | None = None) -> int:
    """Draw the live view until Ctrl-C (or `seconds`)."""
    watch = lab_watch(lab).start()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        with Live(refresh_per_second=refresh, screen=False, auto_refresh=False) as live:
            while deadline is None or time.monotonic() < deadline:
                snap = watch.snapshot()
                live.update(render(snap, list(watch.transitions)), refresh=True)
                time.sleep(1 / refresh)
    except KeyboardInterrupt:
        pass
    finally:
        watch.stop()
    return 0
