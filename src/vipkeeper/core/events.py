"""Inputs to the VRRP core, named as facts that already happened.

Every event is a frozen, keyword-only dataclass. The core never reads a clock: the caller passes
`now` (seconds, monotonic) alongside each event. The adapters in `vipkeeper.io` create these from
sockets, netlink and script results; nothing here knows how.
"""

from __future__ import annotations

from vipkeeper.core.records import record
from vipkeeper.core.states import GroupRequest, TrackKind
from vipkeeper.core.vrrp_settings import InstanceSettings


@record
class Started:
    """The daemon started the instance (RFC 9568 §6.4.1 Startup event)."""


@record
class PacketReceived:
    """A protocol-112 packet arrived on the instance's interface.

    `payload` is the VRRP message only (IPv4 header already stripped); `ttl` is the IPv4 TTL or
    the IPv6 hop limit as the kernel reported it; `source` and `destination` are the IP
    addresses of the enclosing IP header, as text.
    """

    source: str
    destination: str
    ttl: int
    payload: bytes


@record
class TimerFired:
    """The deadline returned by the instance's `next_deadline()` has passed."""


@record
class TrackChanged:
    """A tracked object (interface or script) changed state.

    `name` is the interface or vrrp_script name as configured; `up` is its new state.
    `kind` says which table the name belongs to; None applies the change to every tracked
    object of that name.
    """

    name: str
    up: bool
    kind: TrackKind | None = None

    def __post_init__(self) -> None:
        if self.kind is not None:
            object.__setattr__(self, "kind", TrackKind(self.kind))


@record
class SourceAddressChanged:
    """The primary address the instance sends from changed (None: the interface has none)."""

    address: str | None


@record
class ShutdownRequested:
    """The operator asked the daemon to stop (SIGTERM/SIGINT; RFC 9568 §6.4.3 Shutdown)."""


@record
class PriorityChanged:
    """The configured (base) priority changed, e.g. on a configuration reload (1..255)."""

    priority: int


@record
class Reconfigured:
    """A reload changed only what an instance can take without a restart: its priority and its
    virtual addresses (`VrrpInstance.can_reconfigure` says which settings those are)."""

    settings: InstanceSettings


@record
class SyncGroupRequested:
    """A vrrp_sync_group asked this member to follow another member.

    Only `vipkeeper.core.sync_group` creates these.
    """

    group: str
    state: GroupRequest
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", GroupRequest(self.state))


@record
class SteadyReport:
    """An autopilot gives back an instance it carried in a steady state (`VrrpInstance.steady`).

    While it held the instance, it repeated the steady action `count` times. As Master it sent
    the advertisement each time it was due, and the next one is due one Advertisement_Interval
    after `last_at`. As Backup it heard the Master's identical advertisement, the last one
    arriving at `last_at`. `count` 0 changes nothing.
    """

    count: int
    last_at: float


Event = (
    Started
    | PacketReceived
    | TimerFired
    | TrackChanged
    | SourceAddressChanged
    | ShutdownRequested
    | PriorityChanged
    | Reconfigured
    | SyncGroupRequested
    | SteadyReport
)
