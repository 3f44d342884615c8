"""The typed configuration model: what vipkeeper will run, after parsing and validation.

Owns the frozen, keyword-only dataclasses the daemon maps to runtime objects. Values are already
converted (ints, floats in seconds, booleans, IP addresses as validated text) and defaults are
already resolved (global GARP settings folded into each instance, virtual/real server checker
settings folded into each checker), so the daemon never needs to look back at keepalived rules.
Every object keeps the `Location` of the keyword that defined it (left out of comparisons: a
reload compares what a setting is, not where it is written), so later errors (an interface
that does not exist, a failed bind) can point at the configuration line.

It must never hold anything vipkeeper ignores: unsupported keywords stop at the builder.
The LVS half (virtual, real and sorry servers, checkers) is `config.lvs_model`'s.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import field

from vipkeeper.config.diagnostics import Location
from vipkeeper.core import lb_kinds
from vipkeeper.core.records import record
from vipkeeper.core.vrrp_numbers import MULTICAST_V4, MULTICAST_V6

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:  # loaded with the first virtual_server block (config/lvs_model.py)
    from vipkeeper.config.lvs_model import VirtualServer

DEFAULT_MCAST_GROUP4 = MULTICAST_V4
DEFAULT_MCAST_GROUP6 = MULTICAST_V6


class VrrpState(enum.Enum):
    """The initial state an instance is configured to start in."""

    MASTER = "MASTER"
    BACKUP = "BACKUP"


class LvsBackend(enum.Enum):
    """vipkeeper extension: which kernel data plane carries the virtual servers."""

    AUTO = "auto"
    IPVS = "ipvs"
    NFTABLES = "nftables"


# The LVS closed sets (core.lb_kinds), named here in the configuration's words.
LvsScheduler = lb_kinds.Scheduler
LvsMethod = lb_kinds.ForwardingMethod
Protocol = lb_kinds.Protocol


@record
class Command:
    """A program to run: argv as keepalived would split it, and the user/group to run it as."""

    argv: tuple[str, ...]
    user: str | None = None
    group: str | None = None
    location: Location = field(compare=False)


# The global_defs keywords naming notify FIFOs (each may have a `<name>_script`), in the
# order GlobalDefs holds them.
NOTIFY_FIFOS = ("notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo")


@record
class NotifyFifo:
    """`notify_fifo` / `vrrp_notify_fifo` / `lvs_notify_fifo PATH`: a FIFO that gets one line
    per event in keepalived's format, and the `*_fifo_script` that reads it (started with the
    FIFO's path as its last argument)."""

    path: str
    script: Command | None = None
    location: Location = field(compare=False)


@record
class LvsSyncDaemon:
    """`lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]`:
    the kernel's IPVS connection-sync daemon, Master while `instance` is MASTER, else Backup.
    None in a field means the kernel's default."""

    interface: str
    instance: str
    sync_id: int | None = None
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None
    location: Location | None = field(default=None, compare=False)


@record
class GlobalDefs:
    """`global_defs { }`: the daemon-wide settings, and the defaults instances take."""

    router_id: str | None = None
    vrrp_version: int = 2
    vrrp_garp_master_delay: int = 5
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: int = 0
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_lower_prio_delay: int | None = None  # None: vrrp_garp_master_delay
    vrrp_garp_lower_prio_repeat: int | None = None  # None: vrrp_garp_master_repeat
    vrrp_higher_prio_send_advert: bool = False
    vrrp_lower_prio_no_advert: bool = False
    vrrp_skip_check_adv_addr: bool = False
    vrrp_strict: bool = False
    enable_script_security: bool = False
    script_user: str | None = None
    script_group: str | None = None
    vrrp_mcast_group4: str = DEFAULT_MCAST_GROUP4
    vrrp_mcast_group6: str = DEFAULT_MCAST_GROUP6
    lvs_backend: LvsBackend = LvsBackend.AUTO
    lvs_hash_seed: int | None = None
    vrrp_peer_filter: bool = False  # nftables: VRRP in only from unicast peers (io.vrrp_filter)
    notify_fifo: NotifyFifo | None = None  # VRRP and LVS events
    vrrp_notify_fifo: NotifyFifo | None = None  # VRRP events only
    lvs_notify_fifo: NotifyFifo | None = None  # LVS events only
    lvs_sync_daemon: LvsSyncDaemon | None = None
    location: Location | None = field(default=None, compare=False)


@record
class VrrpScript:
    """A `vrrp_script` block: a periodic check whose result can change instance priority."""

    name: str
    command: Command
    interval: float = 1.0
    timeout: float | None = None
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    location: Location = field(compare=False)


@record
class VirtualIpAddress:
    """One line of `virtual_ipaddress` / `virtual_ipaddress_excluded`."""

    address: str
    prefix_length: int
    broadcast: str | None = None
    device: str | None = None
    scope: str | None = None
    label: str | None = None
    location: Location = field(compare=False)

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix_length}"


@record
class TrackedInterface:
    """One interface of a `track_interface` list."""

    name: str
    weight: int = 0  # 0: interface down puts the instance in FAULT
    reverse: bool = False
    location: Location = field(compare=False)


@record
class TrackedScript:
    """One `vrrp_script` named in a `track_script` list."""

    name: str
    weight: int | None = None  # None: the vrrp_script's own weight applies
    reverse: bool | None = None  # None: the vrrp_script's own setting applies
    location: Location = field(compare=False)


@record
class UnicastPeer:
    """One address of a `unicast_peer` list."""

    address: str
    location: Location = field(compare=False)


@record
class Authentication:
    """VRRPv2 simple-text authentication (RFC 2338 §5.3.6; removed by RFC 3768)."""

    auth_type: str  # always "PASS"
    auth_pass: str
    location: Location = field(compare=False)


def instance_family(
    addresses: Sequence[VirtualIpAddress], *, native_ipv6: bool, unicast_src_ip: str | None
) -> int:
    """The one rule for a VRRP instance's address family (4 or 6), as keepalived decides it:
    `native_ipv6` forces IPv6, else the first virtual address (excluded ones count), else the
    family of `unicast_src_ip`, else IPv4."""
    if native_ipv6:
        return 6
    if addresses:
        return addresses[0].family
    if unicast_src_ip:
        return ipaddress.ip_address(unicast_src_ip).version
    return 4


@record
class VrrpInstance:
    """A `vrrp_instance` block, with global defaults already folded in."""

    name: str
    state: VrrpState = VrrpState.BACKUP
    interface: str
    virtual_router_id: int
    priority: int = 100
    advert_int: float = 1.0
    version: int = 2  # effective: IPv6 instances always run VRRPv3
    preempt: bool = True
    preempt_delay: float = 0.0
    authentication: Authentication | None = None
    virtual_ipaddresses: tuple[VirtualIpAddress, ...] = ()
    virtual_ipaddresses_excluded: tuple[VirtualIpAddress, ...] = ()
    track_interfaces: tuple[TrackedInterface, ...] = ()
    track_scripts: tuple[TrackedScript, ...] = ()
    unicast_src_ip: str | None = None
    unicast_peers: tuple[UnicastPeer, ...] = ()
    garp_master_delay: int = 5
    garp_master_repeat: int = 5
    garp_master_refresh: int = 0
    garp_master_refresh_repeat: int = 1
    # A Master hearing a lower-priority advert re-announces its addresses (resolved from
    # global_defs, then from the garp_master_* values).
    garp_lower_prio_delay: int = 5
    garp_lower_prio_repeat: int = 5
    higher_prio_send_advert: bool = False
    lower_prio_no_advert: bool = False
    notify_master: Command | None = None
    notify_backup: Command | None = None
    notify_fault: Command | None = None
    notify_stop: Command | None = None
    notify: Command | None = None
    native_ipv6: bool = False
    dont_track_primary: bool = False
    # use_vmac: the macvlan carrying the RFC virtual MAC and the VIPs (None: not used);
    # vmac_xmit_base: adverts go out and come in on `interface` instead of the macvlan.
    use_vmac: str | None = None
    vmac_xmit_base: bool = False
    accept: bool | None = None  # None: not configured (accept unless strict)
    skip_check_adv_addr: bool = False
    strict_mode: bool = False
    mcast_group: str = DEFAULT_MCAST_GROUP4  # from global_defs, for the instance's family
    location: Location = field(compare=False)

    @property
    def family(self) -> int:
        """4 or 6: the address family of the virtual addresses (and so of the adverts)."""
        return instance_family(
            (*self.virtual_ipaddresses, *self.virtual_ipaddresses_excluded),
            native_ipv6=self.native_ipv6,
            unicast_src_ip=self.unicast_src_ip,
        )

    @property
    def is_address_owner(self) -> bool:
        return self.priority == 255

    @property
    def advert_interface(self) -> str:
        """Where adverts are sent and heard: the macvlan, unless vmac_xmit_base or no vmac."""
        if self.use_vmac is None or self.vmac_xmit_base:
            return self.interface
        return self.use_vmac

    def vip_device(self, vip: VirtualIpAddress) -> str:
        """The interface a virtual address lives on: its `dev`, else the macvlan, else ours."""
        return vip.device or self.use_vmac or self.interface

    @property
    def uses_unicast(self) -> bool:
        return bool(self.unicast_peers)


@record
class VrrpSyncGroup:
    """`vrrp_sync_group NAME`: instances that change state together."""

    name: str
    instances: tuple[str, ...]
    track_interfaces: tuple[TrackedInterface, ...] = ()
    track_scripts: tuple[TrackedScript, ...] = ()
    notify_master: Command | None = None
    notify_backup: Command | None = None
    notify_fault: Command | None = None
    notify_stop: Command | None = None
    notify: Command | None = None
    location: Location = field(compare=False)


@record
class Config:
    """A whole, valid configuration. Collections keep the order of the file."""

    global_defs: GlobalDefs
    vrrp_scripts: tuple[VrrpScript, ...] = ()
    vrrp_instances: tuple[VrrpInstance, ...] = ()
    vrrp_sync_groups: tuple[VrrpSyncGroup, ...] = ()
    virtual_servers: tuple[VirtualServer, ...] = ()
    files: tuple[str, ...] = ()  # the main file and every included file, in reading order

    def vrrp_script(self, name: str) -> VrrpScript | None:
        return next((script for script in self.vrrp_scripts if script.name == name), None)

    def vrrp_instance(self, name: str) -> VrrpInstance | None:
        return next((inst for inst in self.vrrp_instances if inst.name == name), None)

    def sync_group_of(self, instance_name: str) -> VrrpSyncGroup | None:
        return next(
            (group for group in self.vrrp_sync_groups if instance_name in group.instances), None
        )
