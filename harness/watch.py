"""`make watch`: the lab's live view, a terminal dashboard drawn with rich.

Owns: what the view shows (per director its container, VRRP state, priority, front link and
whether it holds the VIP; the client's ARP entry for the VIP; a rolling HTTP probe from the
client; each real server's health as the MASTER's checker sees it, whether httpd runs and
whether it suppresses ARP for the VIP; the last transitions with their reasons), how it gets
them fast enough to show a change within VIEW_BOUND, and the transitions it derives from
consecutive snapshots.

How it stays fast: nothing is asked when the screen is drawn.  One long-lived process per
container (a `feed`, started once through the Docker API and read as a stream) reports every
FEED_INTERVAL s: in each director the daemon's status (through its control socket, by the
Python that runs vipkeeper) with the front interface's addresses and link; in the client its
neighbour entry for the VIP and the HTTP prober's records; in each real server httpd and ARP
suppression.  Docker's container states come from one request to the engine every
STATE_INTERVAL s.  A feed that ends (its container was killed, recreated or is starting) is
started again.  A paused container's feed stalls: its last reading stands (nothing in a frozen
container can change its addresses) and the container is shown paused.  Sources are small
objects with non-blocking `read`s, so the view can be driven by fakes.

Must never: read a log (directors are read through their control socket, what
`vipkeeper status --json` prints); change the lab; ask the lab anything while drawing.

One module, hence its length: the feeds, the snapshot they fill and the screen drawn from it
share one reading's shape, and a reader checking VIEW_BOUND follows a value from container to
screen without changing files.
"""

from __future__ import annotations

import faulthandler
import json
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harness.checks import healthy, instance_of
from harness.lab import ExecStream, Lab
from harness.probes import PROBE_DIR, Request, install_script, neighbour_mac, vip_url

VIEW_BOUND = 1.0  # s: from a fault acting to the screen showing its effect
REFRESH = 4.0  # screen refreshes per second
FEED_INTERVAL = 0.2  # s between two readings of a feed inside its container
ARP_INTERVAL = 0.1  # s between two looks at the client's neighbour entry
STATE_INTERVAL = 0.1  # s between two asks of the engine for the containers' states
POLL_INTERVAL = 0.05  # s between two reads of one source by the model
RESTART = 0.2  # s before a feed that ended is started again
STALE = 2.0  # s: a running container's reading older than this is not shown
HTTP_WINDOW = 5.0  # s of requests the HTTP figures are computed over
TRANSITIONS_SHOWN = 8
STOP_BOUND = 5.0  # s: Ctrl-C returns within this even if closing waits on a busy Docker engine


# --- what the view shows ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DirectorView:
    name: str
    container: str  # Docker's state: running, paused, exited, ...
    state: str | None = None  # VRRP state from its status; None: no answer
    priority: int | None = None  # effective priority
    holds_vip: bool | None = None
    link: str | None = None  # the front interface: "up" or "down"
    reason: str | None = None  # of its last transition
    real_servers: dict[str, bool | None] = field(default_factory=dict)  # its checker's view


@dataclass(frozen=True, kw_only=True)
class RealServerView:
    name: str
    container: str
    httpd: bool | None = None  # Apache runs
    arp_suppressed: bool | None = None  # the VIP on lo with arp_ignore/arp_announce set


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
    real_server_views: tuple[RealServerView, ...] = ()

    @property
    def holders(self) -> list[str]:
        return [d.name for d in self.directors if d.holds_vip]

    def director(self, name: str) -> DirectorView:
        return next(d for d in self.directors if d.name == name)

    def real_server(self, name: str) -> RealServerView | None:
        return next((r for r in self.real_server_views if r.name == name), None)

    def health(self) -> dict[str, bool | None]:
        """Real server -> healthy, as the (first) VIP holder's checker sees it."""
        views = [d for d in self.directors if d.holds_vip and d.real_servers]
        source = views[0].real_servers if views else {}
        return {rs: source.get(rs) for rs in self.real_servers}


# --- sources ------------------------------------------------------------------------------------
class DirectorSource(Protocol):
    def read(self, director: str) -> DirectorView: ...


class RealServerSource(Protocol):
    def read(self, real_server: str) -> RealServerView: ...


class ArpSource(Protocol):
    def read(self) -> ArpView: ...


class HttpSource(Protocol):
    def window(self, since: float) -> list[Request]: ...

    def close(self) -> None: ...


class ContainerStates:
    """Docker's state of every lab container, asked of the engine every STATE_INTERVAL s in a
    thread, and which service owns which MAC (read again whenever the set of containers
    changes, e.g. one recreated)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._states: dict[str, tuple[str, str]] = {}
        self._macs: dict[str, str] = {}
        self._ids: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                states = self.lab.states()
                ids = frozenset(cid for cid, _ in states.values())
                if ids != self._ids:
                    self._macs = self._read_macs(states)
                    self._ids = ids
                self._states = states
                self.ready.set()
            except Exception:  # the engine is busy or restarting: keep the last answer
                pass
            self._stop.wait(STATE_INTERVAL)

    def _read_macs(self, states: dict[str, tuple[str, str]]) -> dict[str, str]:
        macs: dict[str, str] = {}
        for service, (cid, _) in states.items():
            attrs = self.lab.docker.api.inspect_container(cid)
            for entry in (attrs.get("NetworkSettings") or {}).get("Networks", {}).values():
                if entry.get("MacAddress"):
                    macs[str(entry["MacAddress"]).lower()] = service
        return macs

    def state(self, service: str) -> str:
        return self._states.get(service, ("", "missing"))[1]

    def container_id(self, service: str) -> str | None:
        entry = self._states.get(service)
        return entry[0] if entry else None

    def service_of_mac(self, mac: str) -> str | None:
        return self._macs.get(mac.lower())

    def close(self) -> None:
        self._stop.set()


@dataclass(frozen=True)
class Reading:
    container_id: str  # the container the feed ran in
    received: float  # wall clock
    line: bytes


class Feed:
    """One long-running process in a service's container, its output read line by line in a
    thread; the newest line is kept.  Started when the container runs, and again RESTART s after
    it ends (the container was killed, recreated, or the process failed)."""

    def __init__(
        self,
        lab: Lab,
        states: ContainerStates,
        service: str,
        argv: Callable[[], list[str]],
        *,
        on_line: Callable[[Reading], None] | None = None,
    ) -> None:
        self.lab, self.states, self.service, self.argv = lab, states, service, argv
        self.on_line = on_line
        self.latest: Reading | None = None
        self._stream: ExecStream | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            if self.states.state(self.service) == "running":
                with suppress(Exception):  # the container went away or is between states
                    self._follow()
            self._closed.wait(RESTART)

    def _follow(self) -> None:
        stream = self.lab.exec_stream(self.service, self.argv())
        if stream is None:
            return
        container_id = stream.container_id
        self._stream = stream
        try:
            if self._closed.is_set():
                return
            buffer = b""
            for chunk in stream.chunks():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        reading = Reading(container_id, time.time(), line)
                        self.latest = reading
                        if self.on_line is not None:
                            self.on_line(reading)
        finally:
            self._stream = None
            stream.close()

    def current(self) -> Reading | None:
        """The newest line from the container that is there now; None if there is none yet, or
        if a running container's newest line is older than STALE s."""
        reading = self.latest
        if reading is None or reading.container_id != self.states.container_id(self.service):
            return None
        if self.states.state(self.service) == "running" and time.time() - reading.received > STALE:
            return None
        return reading

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None:
            stream.close()


def _json(reading: Reading | None) -> Any:
    if reading is None:
        return None
    try:
        return json.loads(reading.line)
    except ValueError:
        return None


DIRECTOR_PYTHON = (
    # The Python that runs vipkeeper (its console script's interpreter), else python3.
    'py="$(dirname "$(readlink -f "$(command -v vipkeeper)")")/python"; '
    '[ -x "$py" ] || py=python3; exec "$py" -u -c "$0" "$@"'
)


class LabDirectors:
    """Each director's feed (harness/incontainer/director_feed.py) turned into a view."""

    def __init__(self, lab: Lab, states: ContainerStates) -> None:
        self.lab, self.states = lab, states
        script = resources.files("harness.incontainer").joinpath("director_feed.py").read_text()
        topo = lab.topology

        def argv(director: str) -> Callable[[], list[str]]:
            iface = topo.front_if(director)
            return lambda: ["sh", "-c", DIRECTOR_PYTHON, script, f"{FEED_INTERVAL:g}", iface]

        self.feeds = {d: Feed(lab, states, d, argv(d)) for d in topo.director_names}

    def read(self, director: str) -> DirectorView:
        topo = self.lab.topology
        container = self.states.state(director)
        if container not in ("running", "paused"):
            return DirectorView(name=director, container=container, holds_vip=False)
        row = _json(self.feeds[director].current())
        if not isinstance(row, dict):
            return DirectorView(name=director, container=container)
        status = row.get("status")
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
            holds_vip=topo.vip in (row.get("addresses") or []),
            link=row.get("link"),
            reason=last.get("reason"),
            real_servers=health,
        )

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()


# A real server's feed: "<ARP suppressed 1|0> <httpd running 1|0>" every FEED_INTERVAL s
# (vipset.sh status is the lab's own test of the VIP on lo with ARP suppressed).
REAL_SERVER_FEED = (
    "while :; do "
    "if vipset.sh status >/dev/null 2>&1; then a=1; else a=0; fi; "
    "if pgrep -x apache2 >/dev/null; then h=1; else h=0; fi; "
    'echo "$a $h"; sleep "$0"; done'
)


class LabRealServers:
    def __init__(self, lab: Lab, states: ContainerStates) -> None:
        self.lab, self.states = lab, states
        self.feeds = {
            rs: Feed(lab, states, rs, lambda: ["sh", "-c", REAL_SERVER_FEED, f"{FEED_INTERVAL:g}"])
            for rs in lab.topology.real_server_names
        }

    def read(self, real_server: str) -> RealServerView:
        container = self.states.state(real_server)
        reading = self.feeds[real_server].current()
        if container not in ("running", "paused") or reading is None:
            return RealServerView(name=real_server, container=container)
        words = reading.line.split()
        if len(words) != 2:
            return RealServerView(name=real_server, container=container)
        return RealServerView(
            name=real_server,
            container=container,
            arp_suppressed=words[0] == b"1",
            httpd=words[1] == b"1",
        )

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()


class LabArp:
    """The client's neighbour entry for the VIP (`ip -j neigh show`), every ARP_INTERVAL s."""

    def __init__(self, lab: Lab, states: ContainerStates) -> None:
        self.lab, self.states = lab, states
        topo = lab.topology
        client = topo.client.name
        script = 'while :; do ip -j neigh show "$1" dev "$2"; echo; sleep "$0"; done'
        argv = ["sh", "-c", script, f"{ARP_INTERVAL:g}", topo.vip, topo.front_if(client)]
        self.feed = Feed(lab, states, client, lambda: argv)

    def read(self) -> ArpView:
        if self.states.state(self.lab.topology.client.name) != "running":
            return ArpView(mac=None, node=None)
        entries = _json(self.feed.current())
        mac = neighbour_mac(entries) if isinstance(entries, list) else None
        return ArpView(mac=mac, node=self.states.service_of_mac(mac) if mac else None)

    def close(self) -> None:
        self.feed.close()


class LabHttp:
    """The harness's HTTP prober run in the client with its records streamed back (one new
    connection every `interval` s); started again if its stream ends (the client was killed).
    It also stops on its stop file, which `close` writes."""

    def __init__(
        self,
        lab: Lab,
        states: ContainerStates,
        *,
        interval: float = 0.1,
        timeout: float = 1.0,
    ) -> None:
        self.lab, self.interval, self.timeout = lab, interval, timeout
        self.requests: deque[Request] = deque(maxlen=2000)
        self._lock = threading.Lock()
        self._stop_file = f"{PROBE_DIR}/watch-{uuid.uuid4().hex[:8]}.stop"
        self.feed = Feed(lab, states, lab.topology.client.name, self._argv, on_line=self._add)

    def _argv(self) -> list[str]:
        path = install_script(self.lab, "http_prober.py")
        return [
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

    def _add(self, reading: Reading) -> None:
        row = _json(reading)
        if isinstance(row, dict) and not row.get("done"):
            with self._lock:
                self.requests.append(Request(**row))

    def window(self, since: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.start >= since]

    def close(self) -> None:
        self.feed.close()
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
        real_server_source: RealServerSource | None = None,
        clock: Callable[[], float] = time.time,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.vip, self.director_names, self.real_servers = vip, directors, real_servers
        self.director_source, self.arp_source, self.http_source = (
            director_source,
            arp_source,
            http_source,
        )
        self.real_server_source = real_server_source
        self.clock = clock
        self.on_stop = on_stop
        self.directors = {d: DirectorView(name=d, container="?") for d in directors}
        self.real_server_views = {r: RealServerView(name=r, container="?") for r in real_servers}
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
        for r in self.real_servers:
            self._read_real_server(r)
        self._read_arp()

    def _read_director(self, director: str) -> None:
        try:
            self.directors[director] = self.director_source.read(director)
        except Exception as exc:  # a container between states: say so, ask again
            self.directors[director] = replace(
                self.directors[director], state=None, reason=f"unreadable: {exc}"
            )

    def _read_real_server(self, real_server: str) -> None:
        if self.real_server_source is None:
            return
        try:
            self.real_server_views[real_server] = self.real_server_source.read(real_server)
        except Exception:
            self.real_server_views[real_server] = RealServerView(name=real_server, container="?")

    def _read_arp(self) -> None:
        try:
            self.arp = self.arp_source.read()
        except Exception:
            self.arp = ArpView(mac=None, node=None)

    def start(self) -> Watch:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _loop(self) -> None:
        # The sources answer from what their feeds last reported (they never wait on the lab),
        # so one thread reads them all.
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(POLL_INTERVAL)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for source in (self.director_source, self.arp_source, self.real_server_source):
            close = getattr(source, "close", None)
            if close is not None:
                close()
        self.http_source.close()
        if self.on_stop is not None:
            self.on_stop()

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
            real_server_views=(
                tuple(self.real_server_views[r] for r in self.real_servers)
                if self.real_server_source is not None
                else ()
            ),
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
            if before.link != after.link and after.link is not None:
                self.transitions.append((new.at, f"{after.name}: front link {after.link}"))
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
        for before_rs, after_rs in zip(old.real_server_views, new.real_server_views, strict=True):
            name = after_rs.name
            if before_rs.httpd is not None and after_rs.httpd not in (None, before_rs.httpd):
                word = "httpd running" if after_rs.httpd else "httpd stopped"
                self.transitions.append((new.at, f"{name}: {word}"))
            was_arp, now_arp = before_rs.arp_suppressed, after_rs.arp_suppressed
            if was_arp is not None and now_arp not in (None, was_arp):
                word = "ARP suppression on" if now_arp else "ARP suppression OFF (answers ARP)"
                self.transitions.append((new.at, f"{name}: {word}"))


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
    columns = ("director", "container", "VRRP state", "priority", "VIP", "front link")
    for column in (*columns, "last reason"):
        directors.add_column(column)
    for d in snap.directors:
        directors.add_row(
            d.name,
            d.container,
            Text(d.state or "-", style=STATE_STYLE.get(d.state or "", "")),
            "-" if d.priority is None else str(d.priority),
            {True: "yes", False: "no", None: "?"}[d.holds_vip],
            Text(d.link or "?", style="bold red" if d.link == "down" else ""),
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

    servers = Table(title="real servers", expand=True)
    servers.add_column("real server")
    servers.add_column("health (the MASTER's checker)")
    if snap.real_server_views:
        servers.add_column("httpd")
        servers.add_column("ARP for the VIP")
    for rs, ok in snap.health().items():
        word = {True: ("in the pool", "green"), False: ("FAILED, drained", "bold red")}.get(
            ok, ("?", "")
        )
        cells: list[RenderableType] = [rs, Text(word[0], style=word[1])]
        view = snap.real_server(rs)
        if view is not None:
            httpd = {True: ("running", ""), False: ("STOPPED", "bold red")}.get(
                view.httpd, (view.container if view.container != "running" else "?", "")
            )
            arp = {True: ("suppressed", ""), False: ("ANSWERS (suppression off)", "bold red")}.get(
                view.arp_suppressed, ("?", "")
            )
            cells += [Text(httpd[0], style=httpd[1]), Text(arp[0], style=arp[1])]
        servers.add_row(*cells)

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
    states = ContainerStates(lab)
    states.ready.wait(timeout=10)
    return Watch(
        vip=topo.vip,
        directors=topo.director_names,
        real_servers=topo.real_server_names,
        director_source=LabDirectors(lab, states),
        arp_source=LabArp(lab, states),
        http_source=http or LabHttp(lab, states),
        real_server_source=LabRealServers(lab, states),
        on_stop=states.close,
    )


def run_watch(lab: Lab, *, refresh: float = REFRESH, seconds: float | None = None) -> int:
    """Draw the live view until Ctrl-C (or `seconds`). SIGUSR1 prints every thread's stack (to
    see what a view that does not answer is waiting for).

    Ctrl-C stops the view even when it was started with SIGINT ignored, as a shell's background
    job (`make watch &` in a script) is: Python then installs no KeyboardInterrupt of its own.
    """
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    watch = lab_watch(lab).start()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        with Live(refresh_per_second=refresh, screen=False, auto_refresh=False) as live:
            while deadline is None or time.monotonic() < deadline:
                started = time.monotonic()
                snap = watch.snapshot()
                live.update(render(snap, list(watch.transitions)), refresh=True)
                time.sleep(max(0.0, 1 / refresh - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    finally:
        # Closing the feeds asks the engine (a stop file in the client, the exec streams): on a
        # busy engine that can take long, and a user's Ctrl-C must not. Every thread the view
        # started is a daemon thread, so returning leaves nothing behind.
        closing = threading.Thread(target=watch.stop, daemon=True)
        closing.start()
        closing.join(STOP_BOUND)
    return 0
