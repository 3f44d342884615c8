"""What a reload changes: the difference between the running configuration and a new one.

Owns the decision of what each VRRP instance needs (kept as it is, reconfigured in place,
restarted, started, stopped) and the operator's list of what changed (instances, virtual
servers, real servers: added / removed / changed), which `vipkeeper reload`, the log and the
status document show.
Must never: touch the running daemon (it computes; `reloader` carries it out) or decide a
real server's health (the Director carries that over itself).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from vipkeeper.assemble import Plan
from vipkeeper.config import lvs_model, model
from vipkeeper.core.vrrp_settings import InstanceSettings


@dataclass(frozen=True)
class Changes:
    """Names of what a reload added, removed or changed (empty everywhere: nothing changed)."""

    instances_added: tuple[str, ...] = ()
    instances_removed: tuple[str, ...] = ()
    instances_changed: tuple[str, ...] = ()
    virtual_servers_added: tuple[str, ...] = ()
    virtual_servers_removed: tuple[str, ...] = ()
    virtual_servers_changed: tuple[str, ...] = ()
    real_servers_added: tuple[str, ...] = ()  # "TCP 10.0.0.1:80 -> 10.0.0.2:80"
    real_servers_removed: tuple[str, ...] = ()
    real_servers_changed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in self.__dataclass_fields__}

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)

    def summary(self) -> str:
        parts = [
            f"{name.replace('_', ' ')}: {', '.join(getattr(self, name))}"
            for name in self.__dataclass_fields__
            if getattr(self, name)
        ]
        return "; ".join(parts) or "nothing changed"


@dataclass(frozen=True)
class InstancePlan:
    """What each instance needs on a reload.

    `kept`: untouched (same settings, same machine). `reconfigured`: the same instance takes
    new settings in place (see `VrrpInstance.can_reconfigure`), keeping its state and timers.
    `restarted` machines stop (priority 0 if Master) and start again with the new settings;
    `started` and `stopped` are machines that appear or disappear. Machine names are instance
    names, or sync group names for grouped instances.
    """

    kept: frozenset[str] = frozenset()
    reconfigured: Mapping[str, InstanceSettings] = field(default_factory=dict)
    restarted_machines: frozenset[str] = frozenset()


def plan_instances(
    old: Plan,
    new: Plan,
    can_reconfigure: Callable[[str, InstanceSettings], bool],
) -> InstancePlan:
    """Sort the instances of `new` by what they need, given the running `old` plan.

    `can_reconfigure(name, settings)` asks the running instance whether it can take `settings`
    in place. A machine (solo instance or sync group) is left running only when every one of
    its members is kept or reconfigured and its membership is the same.
    """
    kept: set[str] = set()
    reconfigured: dict[str, InstanceSettings] = {}
    for name, settings in new.settings.items():
        if name not in old.settings or old.machine_of(name) != new.machine_of(name):
            continue
        if old.settings[name] == settings:
            kept.add(name)
        elif can_reconfigure(name, settings):
            reconfigured[name] = settings
    running = {name for name in new.settings if name in kept or name in reconfigured}
    old_machines = _machines(old)
    new_machines = _machines(new)
    restarted = {
        machine
        for machine, members in old_machines.items()
        if new_machines.get(machine) != members or not members <= running
    }
    return InstancePlan(
        kept=frozenset(n for n in kept if old.machine_of(n)[0] not in restarted),
        reconfigured={
            n: s for n, s in reconfigured.items() if old.machine_of(n)[0] not in restarted
        },
        restarted_machines=frozenset(restarted),
    )


def _machines(plan: Plan) -> dict[str, frozenset[str]]:
    machines = {name: frozenset({name}) for name in plan.solo}
    machines.update({group: frozenset(members) for group, members in plan.groups.items()})
    return machines


def _real_servers(vs: lvs_model.VirtualServer) -> dict[str, lvs_model.RealServer]:
    return {str(vs.endpoint(rs)): rs for rs in vs.real_servers}


def _without_real_servers(vs: lvs_model.VirtualServer) -> lvs_model.VirtualServer:
    return dataclasses.replace(vs, real_servers=())


def changes(old_config: model.Config, new_config: model.Config, old: Plan, new: Plan) -> Changes:
    """The operator's list of what differs between two configurations."""
    old_vs = {vs.key: vs for vs in old_config.virtual_servers}
    new_vs = {vs.key: vs for vs in new_config.virtual_servers}
    rs_added: list[str] = []
    rs_removed: list[str] = []
    rs_changed: list[str] = []
    vs_changed: list[str] = []
    for key in new_vs.keys() & old_vs.keys():
        before, after = _real_servers(old_vs[key]), _real_servers(new_vs[key])
        rs_added += [f"{key} -> {n}" for n in after if n not in before]
        rs_removed += [f"{key} -> {n}" for n in before if n not in after]
        rs_changed += [f"{key} -> {n}" for n in after if n in before and before[n] != after[n]]
        if _without_real_servers(old_vs[key]) != _without_real_servers(new_vs[key]):
            vs_changed.append(key)
    return Changes(
        instances_added=_sorted(n for n in new.settings if n not in old.settings),
        instances_removed=_sorted(n for n in old.settings if n not in new.settings),
        instances_changed=_sorted(
            n
            for n in new.settings
            if n in old.settings
            and (old.settings[n] != new.settings[n] or old.machine_of(n) != new.machine_of(n))
        ),
        virtual_servers_added=_sorted(k for k in new_vs if k not in old_vs),
        virtual_servers_removed=_sorted(k for k in old_vs if k not in new_vs),
        virtual_servers_changed=_sorted(vs_changed),
        real_servers_added=_sorted(rs_added),
        real_servers_removed=_sorted(rs_removed),
        real_servers_changed=_sorted(rs_changed),
    )


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(names))


def lvs_differs(old: model.Config, new: model.Config) -> bool:
    """Whether the LVS half needs the new configuration: virtual servers, the data plane
    settings, the connection-sync daemon, or the VIPs (their interfaces are where DR traffic
    arrives)."""
    from vipkeeper.director import ingress_devices

    return (
        old.virtual_servers != new.virtual_servers
        or old.global_defs.lvs_backend != new.global_defs.lvs_backend
        or old.global_defs.lvs_hash_seed != new.global_defs.lvs_hash_seed
        or old.global_defs.lvs_sync_daemon != new.global_defs.lvs_sync_daemon
        or ingress_devices(old) != ingress_devices(new)
    )
