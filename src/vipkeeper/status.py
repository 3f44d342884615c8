"""The status document: what `vipkeeper status --json` prints, built from the daemon's own state.

Owns the document's format (docs/status.schema.json describes it; STATUS_FORMAT is its version),
the `Journal` of wall-clock facts the daemon records as they happen (start, each instance's last
transition, Master releases, transitions by cause, reloads, the loaded files' checksum), and
`build_status`, which reads the core's objects through their public attributes.
Must never: change the state it reads, take the time itself (the daemon passes wall-clock
times in), or do I/O (the daemon looks up which VIPs are present and passes the answer in).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vipkeeper import __version__
from vipkeeper.assemble import Plan
from vipkeeper.core.effects import ReportTransition
from vipkeeper.core.states import State
from vipkeeper.core.sync_group import SyncGroup
from vipkeeper.core.vrrp import VrrpInstance

if TYPE_CHECKING:  # the director's modules load when the daemon has virtual servers
    from vipkeeper.director import Director

STATUS_FORMAT = 1

# The core's state names as the status document (and keepalived's exporter) spell them.
STATE_NAMES = {
    State.INITIALIZE: "INIT",
    State.BACKUP: "BACKUP",
    State.MASTER: "MASTER",
    State.FAULT: "FAULT",
}
_STATE_BY_CORE_NAME = {state.value: name for state, name in STATE_NAMES.items()}


def state_name(core_name: str) -> str:
    """INIT / BACKUP / MASTER / FAULT for a core state name (as a ReportTransition carries it)."""
    return _STATE_BY_CORE_NAME.get(core_name, core_name)


def config_checksum(files: Iterable[str]) -> str:
    """sha256 over the loaded files' contents, in reading order (main file, then includes)."""
    import hashlib  # OpenSSL's bindings: loaded here, not with the daemon (bench/startup.py)

    digest = hashlib.sha256()
    for path in files:
        digest.update(path.encode() + b"\0")
        try:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class TransitionRecord:
    """An instance's last state change, as the status document shows it."""

    time: float  # seconds since the epoch
    old: str  # INIT / BACKUP / MASTER / FAULT
    new: str
    reason: str


@dataclass(frozen=True)
class ReloadRecord:
    """The outcome of one reload."""

    time: float
    result: str  # "applied" or "refused"
    errors: tuple[str, ...] = ()  # file:line:column messages of a refused configuration
    changes: Mapping[str, Any] = field(default_factory=dict)  # see reload.Changes.as_dict


@dataclass
class Journal:
    """Wall-clock facts the daemon records for status and metrics (all times epoch seconds)."""

    started_at: float
    config_file: str
    config_checksum: str
    config_loaded_at: float
    last_transitions: dict[str, TransitionRecord] = field(default_factory=dict)
    released_master: Counter[str] = field(default_factory=Counter)  # instance -> count
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (inst, to, cause)
    last_reload: ReloadRecord | None = None
    reloads: Counter[str] = field(default_factory=Counter)  # result -> count

    def record_transition(self, transition: ReportTransition, at: float) -> None:
        old, new = state_name(transition.old), state_name(transition.new)
        self.last_transitions[transition.instance] = TransitionRecord(
            time=at, old=old, new=new, reason=transition.reason
        )
        if old == "MASTER" and new != "MASTER":
            self.released_master[transition.instance] += 1
        self.transitions[(transition.instance, new, transition_cause(transition.reason))] += 1

    def record_reload(self, record: ReloadRecord) -> None:
        self.last_reload = record
        self.reloads[record.result] += 1

    def forget(self, instances: Iterable[str]) -> None:
        """Instances a reload removed: their records go (and their metrics series with them)."""
        gone = set(instances)
        for name in gone:
            self.last_transitions.pop(name, None)
            self.released_master.pop(name, None)
        for key in [key for key in self.transitions if key[0] in gone]:
            del self.transitions[key]

    def record_config(self, path: str, checksum: str, at: float) -> None:
        self.config_file, self.config_checksum, self.config_loaded_at = path, checksum, at


# Stable causes for the reasons the core gives (a bounded label set for metrics), first match
# wins. The core's reason texts are tested against this list (tests/unit/test_status.py).
TRANSITION_CAUSES: tuple[tuple[str, str], ...] = (
    ("startup", "startup"),
    ("master down timer expired", "master_down"),
    ("higher priority", "higher_priority"),
    ("equal priority", "higher_address"),
    ("sync group", "sync_group"),
    ("shutdown requested", "shutdown"),
    ("source address", "source_address"),
    ("no source address", "source_address"),
    ("interface", "track_interface"),
    ("script", "track_script"),
    ("tracked object", "tracking"),
)


def transition_cause(reason: str) -> str:
    for prefix, cause in TRANSITION_CAUSES:
        if reason.startswith(prefix):
            return cause
    return "other"


# keepalived's error counters (its exporter's names) from the core's drop reasons.
ERROR_KINDS: dict[str, tuple[str, ...]] = {
    "packet_length": ("too_short", "length"),
    "advert_interval": ("interval_mismatch", "interval_invalid"),
    "ip_ttl": ("ttl",),
    "invalid_type": ("type",),
    "authentication_invalid": ("auth_type_invalid",),
    "authentication_mismatch": ("auth_type",),
    "authentication_failure": ("auth_mismatch",),
}


def _instance(
    instance: VrrpInstance,
    *,
    group: str | None,
    journal: Journal,
    present: frozenset[tuple[str, str]],
) -> dict[str, Any]:
    settings = instance.settings
    stats = instance.stats
    last = journal.last_transitions.get(instance.name)
    if last is None:
        last = TransitionRecord(
            time=journal.started_at, old="INIT", new=STATE_NAMES[instance.state], reason="startup"
        )
    tracking = [
        {
            "kind": "interface",
            "name": name,
            "weight": weight,
            "up": ("interface", name) not in {(k.value, n) for k, n in instance.tracks.down},
        }
        for name, weight in instance.tracks.interfaces.items()
    ] + [
        {
            "kind": "script",
            "name": name,
            "weight": weight,
            "up": ("script", name) not in {(k.value, n) for k, n in instance.tracks.down},
        }
        for name, weight in instance.tracks.scripts.items()
    ]
    dropped = dict(stats.dropped)
    errors = {
        kind: sum(dropped.get(r, 0) for r in reasons) for kind, reasons in ERROR_KINDS.items()
    }
    errors["address_list"] = stats.address_list_mismatch
    return {
        "name": instance.name,
        "state": STATE_NAMES[instance.state],
        "sync_group": group,
        "interface": settings.interface,
        "vrid": settings.vrid,
        "version": settings.version,
        "family": settings.family,
        "priority": instance.base_priority,
        "effective_priority": instance.priority,
        "tracking": tracking,
        "fault_reasons": instance.fault_reasons() if instance.state is State.FAULT else [],
        "source_address": instance.source_address,
        "master_address": instance.master_address,
        "advert_interval": settings.advert_interval,
        "master_advert_interval": instance.master_adver_interval,
        "vips": [
            {
                "address": vip.address,
                "prefixlen": vip.prefixlen,
                "dev": vip.dev,
                "present": (vip.address, vip.dev) in present,
            }
            for vip in settings.virtual_addresses
        ],
        "last_transition": {
            "time": last.time,
            "from": last.old,
            "to": last.new,
            "reason": last.reason,
        },
        "adverts": {
            "sent": stats.adverts_sent,
            "received": stats.adverts_received,
            "priority_zero_sent": stats.priority_zero_sent,
            "priority_zero_received": stats.priority_zero_received,
        },
        "became_master": stats.became_master,
        "released_master": journal.released_master.get(instance.name, 0),
        "errors": errors,
        "dropped": dropped,
    }


def _virtual_servers(director: Director, wall_offset: float) -> list[dict[str, Any]]:
    from vipkeeper.config import lvs_model  # loaded with the first virtual_server block

    result = []
    for vs in director.config.virtual_servers:
        name = vs.key
        service = director.service(name)
        pool = director.pool(name)
        weights = {server.endpoint: server.weight for server in pool.real_servers}
        servers = []
        for rs, endpoint in director.real_servers(vs):
            check = director.last_checks.get((name, endpoint))
            servers.append(
                {
                    "address": endpoint.address,
                    "port": endpoint.port,
                    "weight": rs.weight,
                    "effective_weight": director.monitor.server_weight(name, endpoint),
                    "health": "up" if director.monitor.server_is_up(name, endpoint) else "down",
                    "in_pool": weights.get(endpoint, 0) > 0,
                    "checkers": [lvs_model.CHECKER_KEYWORDS[type(c)] for c in rs.checkers],
                    "last_check": None
                    if check is None
                    else {
                        "time": check.finished_at + wall_offset,
                        "result": "passed" if check.ok else "failed",
                        "detail": check.detail,
                        "latency": check.latency,
                    },
                }
            )
        sorry = director.sorry_server(vs)
        result.append(
            {
                "name": name,
                "address": vs.address,
                "port": vs.port,
                "fwmark": vs.fwmark,
                "protocol": vs.protocol.value,
                "scheduler": service.scheduler.value,
                "method": service.method.value,
                "data_plane": director.backend_name,
                "quorum": vs.quorum,
                "quorum_up": director.monitor.quorum_is_up(name),
                "real_servers": servers,
                "sorry_server": None
                if sorry is None
                else {
                    "address": sorry.address,
                    "port": sorry.port,
                    "active": pool.sorry_active,
                },
            }
        )
    return result


def build_status(
    *,
    plan: Plan,
    instances: Mapping[str, VrrpInstance],
    groups: Mapping[str, SyncGroup],
    director: Director,
    journal: Journal,
    present_vips: frozenset[tuple[str, str]],
    now: float,
    wall_offset: float,
    vrrp_filter: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status document. `present_vips` holds (address, dev) of the VIPs found on their
    interfaces; `now` is the wall-clock time; `wall_offset` turns the loop's clock into it;
    `vrrp_filter` is the peer filter's table, peers and counters (None: not installed)."""
    member_of = {member: group for group, members in plan.groups.items() for member in members}
    last = journal.last_reload
    return {
        "format": STATUS_FORMAT,
        "daemon": {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": journal.started_at,
            "now": now,
        },
        "config": {
            "file": journal.config_file,
            "sha256": journal.config_checksum,
            "loaded_at": journal.config_loaded_at,
        },
        "last_reload": None
        if last is None
        else {
            "time": last.time,
            "result": last.result,
            "errors": list(last.errors),
            "changes": dict(last.changes),
        },
        "instances": [
            _instance(
                instances[name],
                group=member_of.get(name),
                journal=journal,
                present=present_vips,
            )
            for name in plan.settings
            if name in instances
        ],
        "sync_groups": [
            {
                "name": name,
                "state": STATE_NAMES[group.state] if group.state is not None else "INIT",
                "instances": list(group.instances),
            }
            for name, group in groups.items()
        ],
        "virtual_servers": _virtual_servers(director, wall_offset),
        "vrrp_filter": None if vrrp_filter is None else dict(vrrp_filter),
    }
