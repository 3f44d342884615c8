"""What configures one VRRP instance and what it counts: `InstanceSettings`, `InstanceStats`.

Owns the settings' validation (RFC 3768 / RFC 9568 limits, one family per instance), the
advertisement interval as carried on the wire, and the drop reasons counted for received packets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from vipkeeper.core import timing
from vipkeeper.core.records import record
from vipkeeper.core.states import State
from vipkeeper.core.virtual_address import VirtualAddress

OWNER_PRIORITY = 255  # RFC 9568 §6.1: the address owner
MAX_BACKUP_PRIORITY = 254


class DropReason:
    """Counter keys for discarded packets (decoder errors add `vrrp_wire.WireError.reason`)."""

    TTL = "ttl"  # RFC 3768 §7.1 / RFC 9568 §7.1: TTL / hop limit must be 255
    FAMILY = "family"
    VERSION_MISMATCH = "version_mismatch"
    VRID_MISMATCH = "vrid_mismatch"
    OWN_ADVERT = "own_advert"
    UNICAST_PEER = "unicast_peer"  # unicast mode: the source is not a configured peer
    # keepalived's three authentication counters: a type RFC 2338 does not define (invalid), a
    # defined type other than ours (mismatch), our type with another password (failure).
    AUTH_TYPE_INVALID = "auth_type_invalid"  # v2 Auth Type not NONE, PASS or AH
    AUTH_TYPE = "auth_type"  # RFC 3768 §7.1: auth type must match
    AUTH_MISMATCH = "auth_mismatch"  # v2 simple password differs
    INTERVAL_MISMATCH = "interval_mismatch"  # RFC 3768 §7.1: v2 Adver Int must match
    INTERVAL_INVALID = "interval_invalid"  # v3 interval of 0 cannot drive a timer
    NOT_RUNNING = "not_running"  # received before Started or after shutdown
    FAULT_STATE = "fault_state"  # received while in FAULT


@dataclass
class InstanceStats:
    """Counters for one instance; `dropped` maps a drop reason to its count."""

    adverts_sent: int = 0
    adverts_received: int = 0  # accepted advertisements
    priority_zero_sent: int = 0
    priority_zero_received: int = 0
    became_master: int = 0
    lower_priority_discarded: int = 0  # Backup discarded a lower-priority advert (preemption)
    address_list_mismatch: int = 0  # logged only, the advertisement is still processed
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())


@record
class InstanceSettings:
    """Configuration of one vrrp_instance, as the state machine needs it.

    Times are in seconds. `virtual_addresses` all belong to `family` (4 or 6). Weights in
    `track_interfaces` / `track_scripts` follow `vipkeeper.core.track` (0: FAULT when down).
    `initial_state` is keepalived's `state` keyword: MASTER makes a non-owner claim mastership
    after one advertisement interval of silence instead of the full Master_Down_Interval.
    """

    name: str
    interface: str
    vrid: int
    priority: int = 100
    version: int = 2
    family: int = 4
    advert_int: float = 1.0
    virtual_addresses: tuple[VirtualAddress, ...] = ()
    preempt: bool = True
    nopreempt: bool = False
    preempt_delay: float = 0.0
    auth_pass: str | None = None  # v2 auth_type PASS; None: no authentication
    unicast_src_ip: str | None = None  # also keepalived's mcast_src_ip: the address we send from
    unicast_peers: tuple[str, ...] = ()
    mcast_group: str | None = None  # None: 224.0.0.18 / ff02::12 (RFC 3768 §5.2.2, RFC 9568)
    track_interfaces: Mapping[str, int] = field(default_factory=dict)
    track_scripts: Mapping[str, int] = field(default_factory=dict)
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    initial_state: State = State.BACKUP
    accept: bool = True  # RFC 9568 §6.1 Accept_Mode; carried for the driver, not used here
    lower_prio_no_advert: bool = False  # keepalived: Master answers a lower-priority advert
    # keepalived: a Master hearing a lower-priority advert (a partition healing, a frozen peer
    # waking up) announces its addresses again, so clients that followed the other Master's
    # gratuitous ARP come back; a second burst follows after the delay.
    garp_lower_prio_repeat: int = 5
    garp_lower_prio_delay: float = 5.0
    # keepalived: a Master stepping down for a higher priority first sends one advert at its
    # own priority, so the new Master learns there was a split and re-announces.
    higher_prio_send_advert: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"virtual_router_id {self.vrid} is not 1..255")
        if not 1 <= self.priority <= OWNER_PRIORITY:
            raise ValueError(f"priority {self.priority} is not 1..255")
        if self.version not in (2, 3):
            raise ValueError(f"version {self.version} is not 2 or 3")
        if self.family not in (4, 6):
            raise ValueError(f"family {self.family} is not 4 or 6")
        if self.version == 2:
            if self.family != 4:
                raise ValueError("VRRPv2 is IPv4 only (RFC 3768); use version 3 for IPv6")
        elif self.auth_pass is not None:
            raise ValueError("authentication exists only in VRRPv2 (RFC 9568 removed it)")
        problem = timing.advert_int_error(
            version=self.version, seconds=self.advert_int, exact=False
        )
        if problem is not None:
            raise ValueError(f"advert_int {problem}")
        for vip in self.virtual_addresses:
            if ipaddress.ip_address(vip.address).version != self.family:
                raise ValueError(f"virtual address {vip.address} is not IPv{self.family}")
        for peer in (*self.unicast_peers, *filter(None, [self.unicast_src_ip, self.mcast_group])):
            if ipaddress.ip_address(peer).version != self.family:
                raise ValueError(f"unicast address {peer} is not IPv{self.family}")
        if self.initial_state not in (State.MASTER, State.BACKUP):
            raise ValueError("initial state is MASTER or BACKUP")
        if self.preempt_delay < 0 or self.garp_master_delay < 0 or self.garp_master_refresh < 0:
            raise ValueError("delays are not negative")

    @property
    def preempt_enabled(self) -> bool:
        return self.preempt and not self.nopreempt

    @property
    def wire_interval(self) -> int:
        """Advertisement interval as carried on the wire (s for v2, cs for v3).

        v2 carries whole seconds only (RFC 3768 §5.3.7): a fractional advert_int is rounded.
        """
        if self.version == 2:
            return max(1, min(timing.V2_MAX_SECONDS, round(self.advert_int)))
        return timing.seconds_to_centiseconds(self.advert_int)

    @property
    def advert_interval(self) -> float:
        """Advertisement interval in seconds as actually sent (v3 rounded to centiseconds)."""
        if self.version == 2:
            return float(self.wire_interval)
        return timing.centiseconds_to_seconds(self.wire_interval)
