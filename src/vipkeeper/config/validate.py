"""Cross-object checks: rules that need more than one block to decide.

Owns the checks that look across the built objects: names used twice, track_script and sync
group references to things that do not exist, an instance in two sync groups, two instances
claiming the same virtual router on the same link, two virtual servers for the same service,
an instance without unicast peers under vrrp_peer_filter.
Each finding is located at the line that makes the configuration wrong and says what would be
valid. It never changes the objects; it only reports.
"""

from __future__ import annotations

from collections.abc import Iterable

from vipkeeper.config.build import BuiltParts
from vipkeeper.config.diagnostics import Diagnostics, Location

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    from typing import Protocol

    class _Named(Protocol):
        @property
        def name(self) -> str: ...

        @property
        def location(self) -> Location: ...


def validate(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    _unique_names(parts.vrrp_scripts, "vrrp_script", diagnostics)
    _unique_names(parts.vrrp_instances, "vrrp_instance", diagnostics)
    _unique_names(parts.vrrp_sync_groups, "vrrp_sync_group", diagnostics)
    _track_script_references(parts, diagnostics)
    _sync_group_membership(parts, diagnostics)
    _virtual_router_conflicts(parts, diagnostics)
    _virtual_server_conflicts(parts, diagnostics)
    _sync_daemon_instance(parts, diagnostics)
    _peer_filter_peers(parts, diagnostics)


def _unique_names(items: Iterable[_Named], kind: str, diagnostics: Diagnostics) -> None:
    first: dict[str, Location] = {}
    for item in items:
        if item.name in first:
            diagnostics.error(
                item.location,
                f"{kind} {item.name}: name already used at {first[item.name]}; names must be"
                " unique",
            )
        else:
            first[item.name] = item.location


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib  # here: only a configuration with a mistake needs it

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _track_script_references(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    scripts = [script.name for script in parts.vrrp_scripts]
    owners = [(f"vrrp_instance {i.name}", i.track_scripts) for i in parts.vrrp_instances]
    owners += [(f"vrrp_sync_group {g.name}", g.track_scripts) for g in parts.vrrp_sync_groups]
    for owner, tracked in owners:
        for entry in tracked:
            if entry.name in scripts:
                continue
            declared = ", ".join(scripts) if scripts else "none"
            diagnostics.error(
                entry.location,
                f"track_script {entry.name} in {owner}: no vrrp_script of that name"
                f" (declared: {declared}){_did_you_mean(entry.name, scripts)}",
            )


def _sync_group_membership(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    instances = [instance.name for instance in parts.vrrp_instances]
    member_of: dict[str, str] = {}
    for group in parts.vrrp_sync_groups:
        for member in group.instances:
            where = parts.sync_member_locations.get((group.name, member), group.location)
            if member not in instances:
                diagnostics.error(
                    where,
                    f"vrrp_sync_group {group.name}: no vrrp_instance named {member}"
                    f"{_did_you_mean(member, instances)}",
                )
                continue
            if member in member_of:
                diagnostics.error(
                    where,
                    f"vrrp_sync_group {group.name}: {member} is already in sync group"
                    f" {member_of[member]}; an instance can be in only one sync group",
                )
                continue
            member_of[member] = group.name
    for group in parts.vrrp_sync_groups:
        if len(group.instances) == 1:
            diagnostics.warning(
                group.location,
                f"vrrp_sync_group {group.name}: has only one instance, so it synchronises nothing",
            )


def _virtual_router_conflicts(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    # RFC 9568 §7.3: a VRID identifies one virtual router per link and address family; with
    # multicast two instances with the same VRID on one interface would read each other's
    # adverts. keepalived allows it for unicast instances whose peers do not overlap.
    seen: dict[tuple[str, int, int], list[tuple[str, frozenset[str], Location]]] = {}
    for instance in parts.vrrp_instances:
        key = (instance.interface, instance.family, instance.virtual_router_id)
        peers = frozenset(peer.address for peer in instance.unicast_peers)
        for other_name, other_peers, other_location in seen.get(key, []):
            multicast_clash = not peers and not other_peers
            unicast_clash = bool(peers & other_peers)
            if multicast_clash or unicast_clash:
                diagnostics.error(
                    instance.location,
                    f"vrrp_instance {instance.name}: virtual_router_id"
                    f" {instance.virtual_router_id} on {instance.interface} (IPv{instance.family})"
                    f" is already used by {other_name} at {other_location}; use another VRID",
                )
        seen.setdefault(key, []).append((instance.name, peers, instance.location))


def _virtual_server_conflicts(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    first: dict[str, Location] = {}
    for server in parts.virtual_servers:
        key = server.key
        if key in first:
            diagnostics.error(
                server.location,
                f"virtual_server {key}: already declared at {first[key]}",
            )
        else:
            first[key] = server.location


def _sync_daemon_instance(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    sync = parts.global_defs.lvs_sync_daemon
    instances = [instance.name for instance in parts.vrrp_instances]
    if sync is None or sync.instance in instances:
        return
    assert sync.location is not None
    diagnostics.error(
        sync.location,
        f"lvs_sync_daemon: no vrrp_instance named {sync.instance} (its state decides whether"
        f" the sync daemon is Master or Backup){_did_you_mean(sync.instance, instances)}",
    )


def _peer_filter_peers(parts: BuiltParts, diagnostics: Diagnostics) -> None:
    """vrrp_peer_filter accepts VRRP only from unicast peers: an instance without any would
    hear nobody."""
    if not parts.global_defs.vrrp_peer_filter:
        return
    for instance in parts.vrrp_instances:
        if not instance.unicast_peers:
            diagnostics.error(
                instance.location,
                f"vrrp_instance {instance.name}: vrrp_peer_filter (global_defs) lets VRRP in"
                " only from unicast peers and this instance has none; add a unicast_peer block"
                " or remove vrrp_peer_filter",
            )
