"""Turns a validated configuration into the core's settings objects.

Owns the mapping from keepalived.conf's model (`vipkeeper.config.model`) to the pure core's
`InstanceSettings`, and the routing facts the daemon needs (which machine owns which VRID on
which interface). It must stay free of I/O: the daemon and the tests call it alike.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field

from vipkeeper.config import model
from vipkeeper.core.records import record
from vipkeeper.core.states import State
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp_numbers import MULTICAST_V4, MULTICAST_V6
from vipkeeper.core.vrrp_settings import InstanceSettings


def virtual_address(vip: model.VirtualIpAddress, device: str) -> VirtualAddress:
    """`vip` on `device`: the instance's `vip_device(vip)`."""
    return VirtualAddress(
        address=str(ipaddress.ip_address(vip.address)),
        prefixlen=vip.prefix_length,
        dev=device,
        label=vip.label,
        scope=vip.scope,
    )


def instance_settings(config: model.Config, instance: model.VrrpInstance) -> InstanceSettings:
    scripts = {script.name: script for script in config.vrrp_scripts}
    family = instance.family
    track_interfaces = {track.name: track.weight for track in instance.track_interfaces}
    if not instance.dont_track_primary:
        # keepalived tracks the instance's own interface: losing it is a FAULT.
        track_interfaces.setdefault(instance.interface, 0)
    if instance.use_vmac is not None:
        # The macvlan carries the VIPs: while it is missing or down the instance is in FAULT.
        track_interfaces.setdefault(instance.use_vmac, 0)
    track_scripts = {
        track.name: track.weight if track.weight is not None else scripts[track.name].weight
        for track in instance.track_scripts
        if track.name in scripts
    }
    group = instance.mcast_group
    return InstanceSettings(
        name=instance.name,
        interface=instance.advert_interface,
        vrid=instance.virtual_router_id,
        priority=instance.priority,
        version=3 if family == 6 else instance.version,
        family=family,
        advert_int=instance.advert_int,
        virtual_addresses=tuple(
            virtual_address(vip, instance.vip_device(vip)) for vip in instance.virtual_ipaddresses
        ),
        preempt=instance.preempt,
        preempt_delay=instance.preempt_delay,
        auth_pass=instance.authentication.auth_pass if instance.authentication else None,
        unicast_src_ip=instance.unicast_src_ip,
        unicast_peers=tuple(peer.address for peer in instance.unicast_peers),
        mcast_group=None if group in (None, MULTICAST_V4, MULTICAST_V6) else group,
        track_interfaces=track_interfaces,
        track_scripts=track_scripts,
        garp_master_delay=float(instance.garp_master_delay),
        garp_master_repeat=instance.garp_master_repeat,
        garp_master_refresh=float(instance.garp_master_refresh),
        garp_master_refresh_repeat=instance.garp_master_refresh_repeat,
        garp_lower_prio_repeat=instance.garp_lower_prio_repeat,
        garp_lower_prio_delay=float(instance.garp_lower_prio_delay),
        higher_prio_send_advert=instance.higher_prio_send_advert,
        lower_prio_no_advert=instance.lower_prio_no_advert,
        initial_state=State.MASTER if instance.state is model.VrrpState.MASTER else State.BACKUP,
        accept=True if instance.accept is None else instance.accept,
    )


@record
class Plan:
    """What the daemon runs: machines (solo instances and sync groups) and how to reach them."""

    settings: dict[str, InstanceSettings]  # every instance, by name
    groups: dict[str, tuple[str, ...]]  # sync group name -> member instance names
    solo: tuple[str, ...]  # instances in no sync group
    # instance -> the interface whose primary address it speaks from, where that is not the
    # interface its adverts use (use_vmac: the macvlan has no address of its own)
    source_interfaces: dict[str, str] = field(default_factory=dict)

    def source_interface(self, settings: InstanceSettings) -> str:
        return self.source_interfaces.get(settings.name, settings.interface)

    def machine_of(self, instance: str) -> tuple[str, str | None]:
        """(driver machine name, member name or None) for an instance."""
        for group, members in self.groups.items():
            if instance in members:
                return group, instance
        return instance, None

    def routes(self) -> dict[tuple[str, int, int], tuple[str, str | None]]:
        """(interface, address family 4|6, vrid) -> machine route."""
        table: dict[tuple[str, int, int], tuple[str, str | None]] = {}
        for name, settings in self.settings.items():
            table[(settings.interface, settings.family, settings.vrid)] = self.machine_of(name)
        return table


def plan(config: model.Config) -> Plan:
    settings = {i.name: instance_settings(config, i) for i in config.vrrp_instances}
    groups = {
        group.name: tuple(name for name in group.instances if name in settings)
        for group in config.vrrp_sync_groups
    }
    grouped = {name for members in groups.values() for name in members}
    solo = tuple(name for name in settings if name not in grouped)
    sources = {
        i.name: i.interface for i in config.vrrp_instances if i.advert_interface != i.interface
    }
    return Plan(
        settings=settings,
        groups={g: m for g, m in groups.items() if m},
        solo=solo,
        source_interfaces=sources,
    )
