"""Faults: the things that go wrong in an LVS-DR cluster, done to the lab on purpose, each an
object with `apply()` and an exact `undo()`.

Owns: how each fault is made and undone (kill, pause, a VRRP-only partition, a node's frontend
link down, a real server's ARP suppression off, httpd stopped, a director's priority changed and
reloaded), in the Compose lab and on an inventory's hosts (harness.inventory: there kill is the
director failing as a whole, pause its daemon frozen, httpd a systemd unit; the priority fault
needs the Compose lab), which node each applies to by default, how to tell that one is present
(`present`, so a lab broken by hand can be healed too), and the record a fault leaves in the
state file so that `make heal` in another process can undo it.  Must never: leave behind
anything its undo does not remove; touch anything outside the lab; change an inventory's hosts
unless faults were allowed; edit the repository's lab/*/keepalived.conf (the priority fault
edits a copy the director mounts).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from harness.inventory import HTTPD_UNIT
from harness.lab import Lab, LabError
from harness.probes import director_status, masters
from harness.timeline import Timeline
from harness.topology import DIRECTOR_CONF, REACTION_MARGIN
from vipkeeper.testing.waits import wait_until

PARTITION_TABLE = "harness_partition"
STATE_DIR = Path("artifacts/workshop/state")  # relative to the repository root
STATE_FILE = "faults.json"
RUN_TIMEOUT = 30.0  # s: a started container running, a restarted daemon ready for a reload


class FaultError(LabError):
    """A fault cannot be applied here (wrong kind of node, bad parameter)."""


class Fault(ABC):
    """One fault on one node (or on the directors as a whole, for `partition`).

    `apply()` and `undo()` return the moment their call returned (wall clock), by which time
    they have acted, and mark on `timeline`, when one is given, the moment they were issued.
    `params` are what undo needs besides the node; they go into the record.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `make fault`
    roles: ClassVar[tuple[str, ...]]  # the node roles it applies to

    def __init__(
        self,
        lab: Lab,
        node: str | None = None,
        *,
        timeline: Timeline | None = None,
        **params: Any,
    ) -> None:
        self.lab, self.timeline = lab, timeline
        self.node = node or self.default_node(lab)
        role = lab.topology.nodes[self.node].role if self.node in lab.topology.nodes else None
        if role not in self.roles:
            raise FaultError(
                f"{self.name}: {self.node!r} is a {role or 'unknown service'}; "
                f"it applies to: {', '.join(self.roles)}"
            )
        self.params: dict[str, Any] = dict(params)

    @classmethod
    def default_node(cls, lab: Lab) -> str:
        """The node the fault hits when none is named."""
        if "director" in cls.roles:
            holders = sorted(masters(lab))
            return holders[0] if holders else lab.topology.preferred_master.name
        return lab.topology.real_server_names[0]

    @classmethod
    def present(cls, lab: Lab) -> list[Fault]:
        """This kind of fault as it is in the lab now (whoever made it)."""
        return []

    def label(self) -> str:
        return f"{self.name} {self.node}"

    def settle_time(self) -> float:
        """How long after `apply()` its effect has shown by the protocol's bound: a director
        fault moves the VIP within the slowest Master_Down_Interval."""
        topo = self.lab.topology
        if topo.nodes[self.node].role != "director":
            return 0.0
        return max(d.master_down_interval for d in topo.directors) + REACTION_MARGIN

    def _timed(self, change: Callable[[], None], label: str, kind: str) -> float:
        """Make `change`; return when the call returned, by which time it has taken effect.
        Its timeline mark is dated when it was issued: its effect can show before the call
        returns (the VIP gone while `docker kill` still waits on the engine), and a change
        seen then must not appear to come before its cause."""
        self._allowed()
        issued = time.time()
        change()
        if self.timeline is not None:
            self.timeline.mark(label, kind=kind, at=issued)
        return time.time()

    def apply(self) -> float:
        return self._timed(self._apply, self.label(), "fault")

    def undo(self) -> float:
        return self._timed(self._undo, f"undo {self.label()}", "repair")

    def _allowed(self) -> None:
        """An inventory's hosts are changed only when faults were allowed (--allow-faults)."""
        if self.lab.kind == "inventory" and not self.lab.allow_faults:
            raise FaultError(f"{self.label()}: changes the hosts; faults need --allow-faults")

    @abstractmethod
    def _apply(self) -> None: ...

    @abstractmethod
    def _undo(self) -> None: ...

    def record(self) -> dict[str, Any]:
        return {"fault": self.name, "node": self.node, "params": self.params}


def _running(lab: Lab, node: str) -> None:
    wait_until(lambda: lab.state(node) == "running", timeout=RUN_TIMEOUT, what=f"{node} running")


class Kill(Fault):
    """Compose lab: `docker kill`.  Inventory: the director fails as a whole (frontend link
    down, vipkeeper killed with SIGKILL and held down: InventoryLab.kill); undo brings it back
    as from a reboot."""

    name = "kill"
    summary = "docker kill a node (default: the MASTER); undo starts it again"
    roles = ("director", "realserver", "client")

    @classmethod
    def present(cls, lab: Lab) -> list[Fault]:
        return [
            cls(lab, s) for s in lab.topology.services if lab.state(s) not in ("running", "paused")
        ]

    def _apply(self) -> None:
        self.lab.kill(self.node)

    def _undo(self) -> None:
        if self.lab.state(self.node) not in ("running", "paused"):
            self.lab.start(self.node)
        _running(self.lab, self.node)


class Pause(Fault):
    """Compose lab: `docker pause`.  Inventory: vipkeeper frozen with SIGSTOP (the host still
    answers ARP for what it holds); undo sends SIGCONT."""

    name = "pause"
    summary = "docker pause a node (default: the MASTER): frozen, its kernel still answers ARP"
    roles = ("director", "realserver", "client")

    @classmethod
    def present(cls, lab: Lab) -> list[Fault]:
        return [cls(lab, s) for s in lab.topology.services if lab.state(s) == "paused"]

    def _apply(self) -> None:
        self.lab.pause(self.node)

    def _undo(self) -> None:
        if self.lab.state(self.node) == "paused":
            self.lab.unpause(self.node)


class Partition(Fault):
    """VRRP only: each director drops IP protocol 112 in and out (an nftables table of its
    own); ARP and client traffic still flow, so both directors become MASTER."""

    name = "partition"
    summary = "the directors stop hearing each other's VRRP adverts (data path kept): split brain"
    roles = ("director",)

    RULES = (
        f"table inet {PARTITION_TABLE} {{\n"
        "  chain input { type filter hook input priority -300; ip protocol 112 drop; }\n"
        "  chain output { type filter hook output priority -300; ip protocol 112 drop; }\n"
        "}\n"
    )

    def __init__(self, lab: Lab, node: str | None = None, **kwargs: Any) -> None:
        # NODE cuts that one director off from the others; without it every director is cut.
        super().__init__(lab, node or lab.topology.director_names[0], **kwargs)
        self.params.setdefault("directors", [node] if node else list(lab.topology.director_names))

    @classmethod
    def present(cls, lab: Lab) -> list[Fault]:
        cut = [
            d
            for d in lab.topology.director_names
            if lab.state(d) == "running"
            and lab.exec(d, ["nft", "list", "table", "inet", PARTITION_TABLE]).ok
        ]
        return [cls(lab, directors=cut)] if cut else []

    def label(self) -> str:
        return f"partition {' '.join(self.params['directors'])}"

    def settle_time(self) -> float:
        return max(d.master_down_interval for d in self.lab.topology.directors) + REACTION_MARGIN

    def _apply(self) -> None:
        for director in self.params["directors"]:
            self.lab.exec(director, ["nft", self.RULES], check=True)

    def _undo(self) -> None:
        for director in self.params["directors"]:
            if self.lab.state(director) == "running":
                self.lab.exec(director, ["nft", "delete", "table", "inet", PARTITION_TABLE])


class Isolate(Fault):
    """The node's frontend interface goes down: off the client's network (a director also
    stops hearing VRRP and leaves MASTER).  Undo brings it up and puts back the default route
    the kernel removed with it."""

    name = "isolate"
    summary = "take a node off the front network (default: the MASTER): its frontend link down"
    roles = ("director", "realserver")

    @classmethod
    def present(cls, lab: Lab) -> list[Fault]:
        found: list[Fault] = []
        for node in (*lab.topology.director_names, *lab.topology.real_server_names):
            iface = lab.topology.front_if(node)
            if lab.state(node) != "running":
                continue
            result = lab.exec(node, ["ip", "-o", "link", "show", "dev", iface])
            if result.ok and "state DOWN" in result.output:
                found.append(cls(lab, node))
        return found

    def _apply(self) -> None:
        iface = self.lab.topology.front_if(self.node)
        if self.lab.kind == "inventory":
            self.lab.link_guard(self.node)  # refuses when the harness reaches it over iface
        routes = self.lab.exec(self.node, ["ip", "route", "show", "default", "dev", iface])
        self.params["default_route"] = routes.output.strip().splitlines()[:1]
        self.lab.exec(self.node, ["ip", "link", "set", "dev", iface, "down"], check=True)

    def _undo(self) -> None:
        iface = self.lab.topology.front_if(self.node)
        self.lab.exec(self.node, ["ip", "link", "set", "dev", iface, "up"], check=True)
        for route in self.params.get("default_route", []):
            # "default via GW dev IFACE ..." back as it was; `replace` is a no-op if present.
            self.lab.exec(self.node, f"ip route replace {route}", check=True)


class RealServerFault(Fault):
    """A fault on a real server, present on each running one where `healthy` is false."""

    roles = ("realserver",)

    @classmethod
    def present(cls, lab: Lab) -> list[Fault]:
        return [cls(lab, rs) for rs in running_real_servers(lab) if not cls.healthy(lab, rs)]

    @staticmethod
    @abstractmethod
    def healthy(lab: Lab, real_server: str) -> bool:
        """The real server shows no sign of this fault."""


class ArpLeak(RealServerFault):
    """The classic LVS-DR "ARP problem": a real server's arp_ignore/arp_announce back to 0/0,
    so it answers ARP for the VIP it holds on lo and the client's entry can name its MAC.
    Both sides flush the client's entry for the VIP so the client resolves it afresh."""

    name = "arp-leak"
    summary = "a real server's ARP suppression off (default: first real server): it answers ARP"

    @staticmethod
    def healthy(lab: Lab, real_server: str) -> bool:
        return arp_suppressed(lab, real_server)

    def _set(self, *, on: bool) -> None:
        set_arp_suppression(self.lab, self.node, on=on)
        flush_client_vip(self.lab)

    def _apply(self) -> None:
        self._set(on=False)

    def _undo(self) -> None:
        self._set(on=True)


def running_real_servers(lab: Lab) -> list[str]:
    """The real servers whose containers run, in the topology's order."""
    return [rs for rs in lab.topology.real_server_names if lab.state(rs) == "running"]


def arp_suppressed(lab: Lab, real_server: str) -> bool:
    """The real server holds the VIP on lo with ARP suppressed (`vipset.sh status` in the
    Compose lab; on a host, the same facts read directly: the realserver role sets them)."""
    if lab.kind != "inventory":
        return lab.exec(real_server, ["vipset.sh", "status"]).ok
    script = (
        "[ $(sysctl -n net.ipv4.conf.all.arp_ignore) -ge 1 ] && "
        "[ $(sysctl -n net.ipv4.conf.all.arp_announce) -ge 2 ] && "
        f"ip -o -4 addr show dev lo | grep -q ' inet {lab.topology.vip}/32 '"
    )
    return lab.exec(real_server, script).ok


def set_arp_suppression(lab: Lab, real_server: str, *, on: bool) -> None:
    """arp_ignore/arp_announce 1/2 (on) or 0/0 (off) on every interface of a real server, from
    a helper that shares its network namespace (the real server's /proc/sys is read-only)."""
    ignore, announce = (1, 2) if on else (0, 0)
    script = (
        "set -e; for d in /proc/sys/net/ipv4/conf/*; do "
        f'echo {ignore} > "$d/arp_ignore"; echo {announce} > "$d/arp_announce"; done'
    )
    result = lab.netns_run(real_server, script, writable_sysctls=True)
    if not result.ok:
        raise LabError(f"{real_server}: cannot set ARP sysctls: {result.output}")


def flush_client_vip(lab: Lab) -> None:
    """The client forgets its neighbour entry for the VIP: the next packet ARPs afresh."""
    topo = lab.topology
    client = topo.client.name
    if lab.state(client) == "running":
        lab.exec(client, ["ip", "neigh", "flush", "to", topo.vip, "dev", topo.front_if(client)])


class HttpdStop(RealServerFault):
    name = "httpd-stop"
    summary = "stop Apache on a real server (default: first real server): the checker drains it"

    @staticmethod
    def healthy(lab: Lab, real_server: str) -> bool:
        return httpd_running(lab, real_server)

    def settle_time(self) -> float:
        return self.lab.topology.health.down_bound() + REACTION_MARGIN

    def _apply(self) -> None:
        if self.lab.kind == "inventory":
            self.lab.unit(self.node, HTTPD_UNIT, "stop")  # systemd runs it on a host
        else:
            self.lab.exec(self.node, ["apache2ctl", "-k", "stop"], check=True)
        wait_until(lambda: not httpd_running(self.lab, self.node), timeout=10, what="httpd to stop")

    def _undo(self) -> None:
        if httpd_running(self.lab, self.node):
            return
        if self.lab.kind == "inventory":
            self.lab.unit(self.node, HTTPD_UNIT, "start")
        else:
            self.lab.exec(self.node, ["apache2ctl", "-k", "start"], check=True)


def httpd_running(lab: Lab, real_server: str) -> bool:
    return lab.exec(real_server, ["pgrep", "-x", HTTPD_UNIT]).ok


class Priority(Fault):
    """Change a director's VRRP priority and reload it (`vipkeeper reload`, no restart).  The
    director must mount a copy of its configuration, kept under the state directory: the first
    time, it is recreated with `LAB_DIRn_CONF` naming the copy (from a BACKUP, no failover);
    after that the copy is edited in place (the bind mount follows the file) and the daemon is
    reloaded."""

    name = "priority"
    summary = "set a director's priority (default: the BACKUP to MASTER's + 50) and reload it"
    roles = ("director",)

    @classmethod
    def default_node(cls, lab: Lab) -> str:
        return min(lab.topology.directors, key=lambda d: d.priority).name

    def __init__(self, lab: Lab, node: str | None = None, **kwargs: Any) -> None:
        if lab.kind == "inventory":
            raise FaultError("priority: needs the Compose lab (it recreates a container)")
        super().__init__(lab, node, **kwargs)
        if "priority" not in self.params:
            top = lab.topology.preferred_master.priority
            self.params["priority"] = min(254, top + 50)
        priority = int(self.params["priority"])
        if not 1 <= priority <= 254:
            raise FaultError(f"priority: {priority} is not in 1..254")
        self.params["priority"] = priority

    def label(self) -> str:
        return f"priority {self.node} {self.params['priority']}"

    def settle_time(self) -> float:
        # A preempting BACKUP takes over on the MASTER's next advert.
        return self.lab.topology.director(self.node).advert_int + REACTION_MARGIN

    def _copy(self) -> Path:
        return state_dir(self.lab) / f"{self.node}.keepalived.conf"

    def _apply(self) -> None:
        copy = self._copy()
        director = self.lab.topology.director(self.node)
        if self.lab.mount_source(self.node, DIRECTOR_CONF) != str(copy):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(director.config_path, copy)
            if director.config_env is None:
                raise FaultError(f"{self.node}: compose.yaml names no variable for its config")
            self.lab.compose_up((self.node,), env={director.config_env: str(copy)})
            _running(self.lab, self.node)
        # When the daemon started: a reload keeps it, a restart would not.
        self.params["started_at"] = self.lab.container(self.node).attrs["State"]["StartedAt"]
        text = copy.read_text()
        self.params.setdefault("original", text)
        changed, count = re.subn(
            r"(?m)^(\s*priority\s+)\d+", rf"\g<1>{self.params['priority']}", text, count=1
        )
        if count != 1:
            raise FaultError(f"{copy}: no `priority` line in its vrrp_instance")
        write_in_place(copy, changed)
        reload_director(self.lab, self.node)

    def _undo(self) -> None:
        copy = self._copy()
        if "original" in self.params and copy.exists():
            write_in_place(copy, self.params["original"])
            if self.lab.state(self.node) == "running":
                reload_director(self.lab, self.node)


def write_in_place(path: Path, text: str) -> None:
    """Rewrite the file's contents keeping its inode: a container's bind mount of a single
    file follows the inode, so a rename would leave the container reading the old file."""
    with path.open("r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


def reload_ready(lab: Lab, director: str) -> bool:
    """The director's daemon catches SIGHUP (its handler is installed: a HUP now reloads
    instead of killing it).  Read from /proc, not from its log."""
    script = (
        "pid=$(pgrep -o -f '(vipkeeper|keepalived) ') && "
        "awk '/^SigCgt:/ {print $2}' /proc/$pid/status"
    )
    result = lab.exec(director, ["sh", "-c", script], timeout=10)
    return result.ok and bool(result.output.strip()) and int(result.output.split()[0], 16) & 1 == 1


def reload_director(lab: Lab, director: str) -> None:
    """Make the director's daemon reload its configuration: `vipkeeper reload` (through its
    control socket, once it answers; refused changes raise), or for keepalived SIGHUP through
    the container's init, once the daemon has its handler installed."""
    if lab.director_daemon() == "vipkeeper":
        wait_until(
            lambda: director_status(lab, director) is not None,
            timeout=RUN_TIMEOUT,
            what=f"{director}'s daemon to answer on its control socket",
        )
        lab.exec(director, ["vipkeeper", "reload"], timeout=30, check=True)
        return
    wait_until(
        lambda: reload_ready(lab, director),
        timeout=RUN_TIMEOUT,
        what=f"{director}'s daemon to be ready for a reload",
    )
    lab.kill(director, signal="SIGHUP")


FAULTS: dict[str, type[Fault]] = {
    cls.name: cls for cls in (Kill, Pause, Partition, Isolate, ArpLeak, HttpdStop, Priority)
}


def make(lab: Lab, name: str, node: str | None = None, **params: Any) -> Fault:
    try:
        cls = FAULTS[name]
    except KeyError:
        raise FaultError(f"no fault {name!r}; faults: {', '.join(FAULTS)}") from None
    return cls(lab, node, **params)


# --- the state file: faults applied by `make fault`, undone by `make heal` ----------------------
def state_dir(lab: Lab) -> Path:
    return lab.topology.root / STATE_DIR


def _state_path(lab: Lab) -> Path:
    return state_dir(lab) / STATE_FILE


def applied(lab: Lab) -> list[dict[str, Any]]:
    path = _state_path(lab)
    return list(json.loads(path.read_text())) if path.exists() else []


def remember(lab: Lab, fault: Fault) -> None:
    path = _state_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*applied(lab), fault.record()], indent=1))


def forget_all(lab: Lab) -> None:
    _state_path(lab).unlink(missing_ok=True)


def from_record(lab: Lab, record: dict[str, Any]) -> Fault:
    return FAULTS[record["fault"]](lab, record["node"], **record.get("params", {}))


def present_faults(lab: Lab, kinds: Iterable[type[Fault]] | None = None) -> list[Fault]:
    """Every fault of these kinds (all by default) present in the lab now, in FAULTS order.
    The kinds are looked for side by side: each look is a few reads of the containers."""
    classes = list(FAULTS.values() if kinds is None else kinds)
    with ThreadPoolExecutor(max_workers=len(classes) or 1) as pool:
        found = list(pool.map(lambda cls: cls.present(lab), classes))
    return [fault for faults in found for fault in faults]


def heal_all(lab: Lab, timeline: Timeline | None = None) -> Iterator[tuple[str, str | None]]:
    """Undo every recorded fault, newest first, then whatever fault is still present (made by
    hand); yield (what, error or None) for each.  The state file is emptied."""
    for record in reversed(applied(lab)):
        fault = from_record(lab, record)
        fault.timeline = timeline
        yield from _undo(fault)
    forget_all(lab)
    for fault in present_faults(lab):
        fault.timeline = timeline
        yield from _undo(fault)


def _undo(fault: Fault) -> Iterator[tuple[str, str | None]]:
    try:
        fault.undo()
    except Exception as exc:  # report and go on: heal as much as can be healed
        yield f"undo {fault.label()}", f"{type(exc).__name__}: {exc}"
    else:
        yield f"undo {fault.label()}", None
