"""Outputs of the VRRP core, named as orders for the I/O adapters to carry out.

Every effect is a frozen, keyword-only dataclass holding plain values. The core decides what and
when; `vipkeeper.drivers.vrrp` executes the orders in the order they were returned.
"""

from __future__ import annotations

from vipkeeper.core.records import record
from vipkeeper.core.states import NotifyState, NotifyTarget, State
from vipkeeper.core.virtual_address import VirtualAddress


@record
class SendAdvert:
    """Send one VRRP message: TTL / hop limit 255, IP protocol 112."""

    interface: str
    source: str
    destination: str
    payload: bytes


@record
class AddVips:
    """Add the addresses to their interfaces."""

    addresses: tuple[VirtualAddress, ...]


@record
class DelVips:
    """Remove the addresses from their interfaces."""

    addresses: tuple[VirtualAddress, ...]


@record
class SendGratuitous:
    """Announce the addresses: gratuitous ARP (IPv4) or unsolicited NA (IPv6), `count` times."""

    addresses: tuple[VirtualAddress, ...]
    count: int


@record
class ReportTransition:
    """Log a state change with its reason (one line per transition)."""

    instance: str
    old: State
    new: State
    reason: str

    def __post_init__(self) -> None:
        # Callers outside the core may give the words; the record holds the enum.
        object.__setattr__(self, "old", State(self.old))
        object.__setattr__(self, "new", State(self.new))


@record
class RunNotify:
    """Run the notify scripts configured for entering `state` (MASTER, BACKUP, FAULT, STOP).

    `kind` is INSTANCE (`instance` names a vrrp_instance) or GROUP (`instance` names a
    vrrp_sync_group), keepalived's first notify argument.
    """

    instance: str
    state: NotifyState
    priority: int
    kind: NotifyTarget = NotifyTarget.INSTANCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", NotifyState(self.state))
        object.__setattr__(self, "kind", NotifyTarget(self.kind))


Effect = SendAdvert | AddVips | DelVips | SendGratuitous | ReportTransition | RunNotify
