"""Probes: what the lab looks like right now, always measured from inside its nodes (the Compose
lab's containers, or an inventory's hosts).

Owns: who holds the VIP (`ip -o addr` on the directors), which MACs answer ARP for the VIP
(scapy in the client), single HTTP requests and the long-running HTTP prober (both in the
client), and a watcher that timestamps VIP moves.  Must never: send a packet from the host.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import docker.errors

from harness.lab import Lab, LabError
from vipkeeper.testing.threads import Sampler
from vipkeeper.testing.waits import wait_until

PROBE_DIR = "/tmp/harness"


def install_script(lab: Lab, name: str) -> str:
    """Copy harness/incontainer/NAME into the client; return its path there."""
    source = resources.files("harness.incontainer").joinpath(name).read_bytes()
    client = lab.topology.client.name
    lab.exec(client, ["mkdir", "-p", PROBE_DIR], check=True)
    path = f"{PROBE_DIR}/{name}"
    lab.put_file(client, path, source)
    return path


def vip_url(lab: Lab) -> str:
    return f"http://{lab.topology.vip}:{lab.topology.vip_port}/"


# --- VIP ownership ------------------------------------------------------------------------------
def holds_vip(lab: Lab, director: str) -> bool | None:
    """True/False when known; None when the director cannot be asked (not running nor paused)."""
    stopped = ("exited", "created", "dead")
    script = f"ip -o -4 addr show dev {lab.topology.front_if(director)}"
    if lab.kind == "inventory":
        # A host is asked directly, whatever its daemon's state.  Only a link that is up
        # counts: a failed host's link is down and keeps its addresses, serving none of them.
        result = lab.exec(director, f"{script} up", timeout=10)
        return f" {lab.topology.vip}/" in result.output if result.ok else None
    state = lab.state(director)
    if state == "running":
        try:
            result = lab.exec(director, script, timeout=10)
        except docker.errors.APIError:
            # Killed since the state was read: say so now, not at the next look.
            return False if lab.state(director) in stopped else None
        if result.refused_paused:  # paused since the state was read
            result = lab.netns_run(director, script)
    elif state == "paused":
        # A frozen container cannot run `docker exec`; its network namespace can still be read.
        result = lab.netns_run(director, script)
    else:
        return False if state in stopped else None
    if not result.ok:
        return None
    return f" {lab.topology.vip}/" in result.output


def vip_holders(lab: Lab) -> dict[str, bool | None]:
    return {d: holds_vip(lab, d) for d in lab.topology.director_names}


def masters(lab: Lab) -> set[str]:
    """The directors that hold the VIP now."""
    return {d for d, held in vip_holders(lab).items() if held}


# --- the directors' own view -------------------------------------------------------------------
STATUS_COMMAND = ("vipkeeper", "status", "--json")


def director_status(lab: Lab, director: str, *, timeout: float = 5.0) -> dict[str, Any] | None:
    """What `vipkeeper status --json` in the director says (instances, virtual servers), or
    None when it cannot answer (container down or frozen, daemon not up, no such command)."""
    result = lab.exec(director, list(STATUS_COMMAND), timeout=timeout)
    if not result.ok:
        return None
    try:
        doc = json.loads(result.output)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


# --- ARP ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ArpAnswer:
    mac: str
    service: str | None  # which lab container owns that MAC, None if none does


def arp_answers(lab: Lab, *, timeout: float = 1.0) -> list[ArpAnswer]:
    """Every MAC that answers one broadcast ARP request for the VIP sent by the client."""
    path = install_script(lab, "arp_probe.py")
    topo = lab.topology
    argv = ["python3", path, topo.vip, topo.front_if(topo.client.name), str(timeout)]
    result = lab.exec(topo.client.name, argv, timeout=timeout + 30, check=True)
    macs = json.loads(result.output.strip().splitlines()[-1])
    return [ArpAnswer(mac=m, service=lab.service_of_mac(m)) for m in macs]


def client_vip_mac(lab: Lab) -> str | None:
    """The MAC the client's kernel sends VIP traffic to now (its neighbour entry for the VIP),
    or None when it has no usable entry.  This is what gratuitous ARP updates."""
    topo = lab.topology
    client = topo.client.name
    argv = ["ip", "-j", "neigh", "show", topo.vip, "dev", topo.front_if(client)]
    result = lab.exec(client, argv, timeout=10)
    if not result.ok:
        return None
    return neighbour_mac(json.loads(result.output or "[]"))


def neighbour_mac(entries: list[dict[str, Any]]) -> str | None:
    """The usable MAC in `ip -j neigh show` entries (a FAILED entry has none)."""
    for entry in entries:
        mac = entry.get("lladdr")
        if mac and "FAILED" not in entry.get("state", []):
            return str(mac).lower()
    return None


# --- HTTP ---------------------------------------------------------------------------------------
def http_get(lab: Lab, *, timeout: float = 2.0) -> str | None:
    """One request to the VIP from the client over a new connection; the answering real
    server's name (first word of the page) or None on failure."""
    result = lab.exec(
        lab.topology.client.name,
        ["curl", "-sS", "-m", f"{timeout:g}", vip_url(lab)],
        timeout=timeout + 10,
    )
    words = result.output.split()
    return words[0] if result.ok and words else None


def servers_answering(lab: Lab, *, requests: int = 20, timeout: float = 2.0) -> dict[str, int]:
    """Real server name -> number of answers over `requests` new connections ("" = failures).

    Requests go from the client's own python3 so each uses a new source port (a new flow)."""
    script = (
        "import collections,json,urllib.request\n"
        "c=collections.Counter()\n"
        f"for _ in range({requests}):\n"
        "    try:\n"
        f"        b=urllib.request.urlopen('{vip_url(lab)}',timeout={timeout}).read()\n"
        "        c[b.decode().split()[0]]+=1\n"
        "    except Exception:\n"
        "        c['']+=1\n"
        "print(json.dumps(c))\n"
    )
    result = lab.exec(
        lab.topology.client.name,
        ["python3", "-c", script],
        timeout=requests * timeout + 10,
        check=True,
    )
    return dict(json.loads(result.output.strip().splitlines()[-1]))


@dataclass(frozen=True, kw_only=True)
class Request:
    kind: str  # "new" (a connection per request) or "keepalive" (one persistent connection)
    seq: int
    conn: int
    start: float  # wall clock, seconds (the containers share the host's clock)
    end: float
    status: int | None
    error: str | None
    server: str | None
    stream: int = 0  # 0 for "new"; 1.. numbers the keep-alive streams

    @property
    def ok(self) -> bool:
        return self.status == 200


class HttpProber:
    """Requests to the VIP from inside the client, every `interval` s, each one recorded.

    with HttpProber(lab) as prober: ...; then prober.requests.  The prober process stops when
    told (a stop file) or after `max_seconds`, whichever comes first.
    """

    def __init__(
        self,
        lab: Lab,
        *,
        interval: float = 0.1,
        timeout: float = 1.0,
        keepalive_timeout: float = 10.0,
        keepalive_streams: int = 1,
        max_seconds: float = 300,
    ) -> None:
        self.lab, self.interval, self.max_seconds = lab, interval, max_seconds
        self.keepalive_streams = keepalive_streams
        self.timeout, self.keepalive_timeout = timeout, keepalive_timeout
        tag = uuid.uuid4().hex[:8]
        self.out = f"{PROBE_DIR}/prober-{tag}.jsonl"
        self.stop_file = f"{PROBE_DIR}/prober-{tag}.stop"
        self.requests: list[Request] = []
        self.client = lab.topology.client.name

    def start(self) -> HttpProber:
        path = install_script(self.lab, "http_prober.py")
        self.lab.exec_detached(
            self.client,
            [
                "python3",
                path,
                vip_url(self.lab),
                self.out,
                self.stop_file,
                str(self.interval),
                str(self.timeout),
                str(self.keepalive_timeout),
                str(self.max_seconds),
                str(self.keepalive_streams),
            ],
        )
        wait_until(
            lambda: len(self.records()) >= 2, timeout=15, what="the HTTP prober's first records"
        )
        return self

    def records(self) -> list[Request]:
        """The requests recorded so far, while the prober runs."""
        return self._read(final=False)

    def _read(self, *, final: bool) -> list[Request]:
        result = self.lab.exec(self.client, ["cat", self.out], timeout=10)
        if not result.ok:
            return []
        rows = []
        for line in result.output.splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                if final:
                    raise
                # Read while the prober was writing it: the next read has the record whole.
        if final and not any(r.get("done") for r in rows):
            raise LabError("the HTTP prober has not finished")
        return [Request(**r) for r in rows if not r.get("done")]

    def stop(self) -> list[Request]:
        self.lab.exec(self.client, ["touch", self.stop_file], check=True)
        self.requests = wait_until(
            lambda: self._read(final=True),
            timeout=self.keepalive_timeout + 10,
            ignore=(LabError,),
            what="the HTTP prober to finish",
        )
        self.lab.exec(self.client, ["rm", "-f", self.out, self.stop_file])
        return self.requests

    def streams(self) -> dict[int, list[Request]]:
        """Keep-alive stream number -> its requests in order (from the final record)."""
        by_stream: dict[int, list[Request]] = {}
        for r in self.requests:
            if r.kind == "keepalive":
                by_stream.setdefault(r.stream, []).append(r)
        return {n: sorted(rs, key=lambda r: r.seq) for n, rs in sorted(by_stream.items())}

    def __enter__(self) -> HttpProber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class VipWatcher(Sampler):
    """A host thread that asks the directors who holds the VIP, as often as docker exec
    allows, and calls `on_change(t, masters)` whenever the answer changes."""

    def __init__(
        self,
        lab: Lab,
        on_change: Callable[[float, frozenset[str]], None],
        *,
        interval: float = 0.1,
    ) -> None:
        super().__init__(interval)
        self.lab, self.on_change = lab, on_change
        self.history: list[tuple[float, frozenset[str]]] = []
        self._last: frozenset[str] | None = None

    def sample(self) -> None:
        current: frozenset[str] | None
        try:
            current = frozenset(masters(self.lab))
        except Exception:  # a container between states; ask again
            current = self._last
        now = time.time()  # after the answer: a change is never dated earlier than seen
        if current is not None and current != self._last:
            self.history.append((now, current))
            self.on_change(now, current)
            self._last = current

    def first_held(self, holders: set[str], *, after: float = 0.0) -> float:
        """When exactly `holders` held the VIP first after `after` (0.0: not yet)."""
        return next((t for t, h in self.history if t > after and h == holders), 0.0)

    def wait_held(self, holders: set[str], *, after: float, timeout: float) -> float:
        """Wait until exactly `holders` hold the VIP after `after`; when they first did."""
        return wait_until(
            lambda: self.first_held(holders, after=after),
            timeout=timeout,
            interval=0.05,
            what=f"{', '.join(sorted(holders))} alone to hold the VIP",
        )
