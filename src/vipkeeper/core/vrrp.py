"""The per-instance VRRP state machine (RFC 3768 §6 for v2, RFC 9568 §6 for v3).

Owns: the states Initialize / Backup / Master / Fault, their timers (Master_Down, Adver, the
second gratuitous ARP burst, the gratuitous ARP refresh), the acceptance checks on received
advertisements (RFC 3768 §7.1, RFC 9568 §7.1), preemption (keepalived's preempt / nopreempt /
preempt_delay), tracking (faults and weighted priorities) and the per-instance counters.

Rules:
- `handle(event, now)` is the only way in; it returns the effects to carry out, in order.
- Time comes only from `now` (seconds, monotonic). The driver arms one timer at
  `next_deadline()` and delivers `TimerFired` at or after it; the instance works out which of
  its own timers expired. A spurious `TimerFired` is harmless.
- Every (state, event type) pair the machine accepts is in `_TRANSITIONS`; any other pair
  raises `ProtocolError`. There is no silent fall-through.
Must never: import anything that does I/O, read a clock, draw random numbers, or act on the
world other than by returning effects.

Its settings and counters live in `vrrp_settings`. The rest stays in one module on purpose (as
h11 keeps its state machine in one): the table and the handlers it names are one piece, and a
reader following a transition should not have to change files; hence its length.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any

from vipkeeper.core import timing, vrrp_numbers, vrrp_wire
from vipkeeper.core.effects import (
    AddVips,
    DelVips,
    Effect,
    ReportTransition,
    RunNotify,
    SendAdvert,
    SendGratuitous,
)
from vipkeeper.core.events import (
    Event,
    PacketReceived,
    PriorityChanged,
    Reconfigured,
    ShutdownRequested,
    SourceAddressChanged,
    Started,
    SteadyReport,
    SyncGroupRequested,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.records import record
from vipkeeper.core.states import GroupRequest, NotifyState, State
from vipkeeper.core.steady import Beacon, Echo, Steady, Watch, next_advert_due
from vipkeeper.core.track import TrackSet
from vipkeeper.core.vrrp_settings import (
    MAX_BACKUP_PRIORITY,
    OWNER_PRIORITY,
    DropReason,
    InstanceSettings,
    InstanceStats,
)


class ProtocolError(Exception):
    """An event arrived in a state that has no transition for it (a driver bug)."""

    def __init__(self, state: State, event: object) -> None:
        super().__init__(f"no transition for {type(event).__name__} in state {state.value}")
        self.state = state
        self.event = event


_AUTH_TYPES = frozenset(vrrp_wire.AuthType)


@functools.lru_cache(maxsize=4096)
def _normalise(address: str) -> str:
    # Cached: every received packet normalises the same few source addresses.
    return str(ipaddress.ip_address(address))


def _address_key(address: str) -> int:
    """Primary addresses compare as unsigned integers (RFC 9568 §6.4.3 tie-break)."""
    return int(ipaddress.ip_address(address))


_Handler = Callable[["VrrpInstance", Any, float], None]
_AdvertHandler = Callable[
    ["VrrpInstance", PacketReceived, float, vrrp_wire.Advertisement, str], None
]


def _on_accepted(handler: _AdvertHandler) -> _Handler:
    """A state's PacketReceived handler that hears only advertisements passing the receive
    checks (`VrrpInstance._accept`), with the decoded advertisement and its source."""

    @functools.wraps(handler)
    def on_packet(instance: VrrpInstance, event: PacketReceived, now: float) -> None:
        received = instance._accept(event)
        if received is not None:
            handler(instance, event, now, *received)

    return on_packet


@record
class _Accepted:
    """A Backup's last accepted advertisement, so its repeats skip decoding."""

    event: Event
    echo: Echo
    master_down_interval: float
    address_mismatch: bool


class VrrpInstance:
    """One vrrp_instance. Feed it events with `handle`; arm a timer at `next_deadline`."""

    def __init__(self, settings: InstanceSettings) -> None:
        self.settings = settings
        self.state = State.INITIALIZE
        self.stats = InstanceStats()
        self.base_priority = settings.priority
        self.source_address: str | None = (
            _normalise(settings.unicast_src_ip) if settings.unicast_src_ip else None
        )
        self.master_address: str | None = None
        self.master_adver_interval = settings.advert_interval
        self.tracks = TrackSet(
            interfaces=dict(settings.track_interfaces), scripts=dict(settings.track_scripts)
        )
        self.group_fault: str | None = None
        self._vip_set = frozenset(_normalise(v.address) for v in settings.virtual_addresses)
        self._peers = frozenset(_normalise(p) for p in settings.unicast_peers)
        self._password = (
            vrrp_wire.pack_password(settings.auth_pass) if settings.auth_pass is not None else None
        )
        self._master_down_at: float | None = None
        self._adver_at: float | None = None
        self._garp_at: float | None = None
        self._garp_refresh_at: float | None = None
        self._preempt_at: float | None = None
        self._out: list[Effect] = []
        self._sends: dict[tuple[int, str], tuple[SendAdvert, ...]] = {}
        self._garp_repeat = settings.garp_master_repeat  # size of the next delayed burst
        self._seen_addresses: tuple[tuple[str, ...], bool] = ((), True)
        # The last advertisement a Backup accepted as its Master's, with the Master_Down_Interval
        # it led to and whether its address list differed (see `handle`).
        self._echo: _Accepted | None = None

    # ---- public API -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def priority(self) -> int:
        """Effective priority: base priority moved by weighted tracks, kept within 1..254.

        The address owner (255) is never moved (keepalived requires weight 0 for owners).
        """
        if self.base_priority == OWNER_PRIORITY:
            return OWNER_PRIORITY
        return max(1, min(MAX_BACKUP_PRIORITY, self.base_priority + self.tracks.delta()))

    def fault_reasons(self) -> list[str]:
        """Why this instance must stay in FAULT (empty: nothing holds it there)."""
        reasons = self.tracks.faults()
        if self.source_address is None:
            reasons.append(f"no source address on {self.settings.interface}")
        if self.group_fault is not None:
            reasons.append(self.group_fault)
        return reasons

    def handle(self, event: Event, now: float) -> list[Effect]:
        # The Master repeats itself: the same bytes from the same sender, with nothing else
        # handled in between, pass the same checks and reach the same branch as last time, so
        # only the counters and the Master_Down_Timer move (no decoding).
        echo = self._echo
        if (
            echo is not None
            and self.state is State.BACKUP
            and (
                event is echo.event
                or (
                    isinstance(event, PacketReceived)
                    and (event.payload, event.source, event.destination, event.ttl) == echo.echo
                )
            )
        ):
            self.stats.adverts_received += 1
            if echo.address_mismatch:
                self.stats.address_list_mismatch += 1
            self._master_down_at = now + echo.master_down_interval
            return []
        if type(event) is not SteadyReport:  # a report continues the repetition it describes
            self._echo = None
        handler = _TRANSITIONS.get((self.state, type(event)))
        if handler is None:
            raise ProtocolError(self.state, event)
        self._out = []
        handler(self, event, now)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        if self.state is State.BACKUP:
            return self._master_down_at
        if self.state is State.MASTER:
            earliest = self._adver_at
            for timer in (self._garp_at, self._garp_refresh_at):
                if timer is not None and (earliest is None or timer < earliest):
                    earliest = timer
            return earliest
        return None

    def steady(self) -> Steady | None:
        """The repetition this instance is in, if nothing but it is due (`core.steady`).

        A Master qualifies while its Adver_Timer is its only timer (no delayed or refresh
        gratuitous ARP pending); a Backup once it has accepted an advertisement it can recognise
        again byte for byte. The caller may carry the repetition out itself, and must then hand
        over a `SteadyReport` before any other event.
        """
        if self.state is State.MASTER:
            if self._garp_at is not None or self._garp_refresh_at is not None:
                return None
            if self._adver_at is None or self.source_address is None:
                return None
            sends = self._sends.get((self.priority, self.source_address))
            if sends is None:
                return None
            return Beacon(
                sends=sends, interval=self.settings.advert_interval, next_at=self._adver_at
            )
        if self.state is State.BACKUP:
            echo = self._echo
            if echo is None or self._master_down_at is None:
                return None
            return Watch(
                interface=self.settings.interface,
                family=self.settings.family,
                echo=echo.echo,
                master_down_interval=echo.master_down_interval,
                deadline=self._master_down_at,
            )
        return None

    # ---- timers -----------------------------------------------------------------------

    def _master_down_interval(self) -> float:
        return timing.master_down_interval(
            version=self.settings.version,
            priority=self.priority,
            master_adver_interval=self.master_adver_interval,
        )

    def _skew_time(self) -> float:
        return timing.skew_time(
            version=self.settings.version,
            priority=self.priority,
            master_adver_interval=self.master_adver_interval,
        )

    def _cancel_timers(self) -> None:
        self._master_down_at = None
        self._adver_at = None
        self._garp_at = None
        self._garp_refresh_at = None

    # ---- outputs ----------------------------------------------------------------------

    def _report(self, new: State, reason: str) -> None:
        self._out.append(
            ReportTransition(instance=self.name, old=self.state, new=new, reason=reason)
        )

    def _notify(self, state: NotifyState) -> None:
        self._out.append(RunNotify(instance=self.name, state=state, priority=self.priority))

    def _send_advert(self, priority: int) -> None:
        assert self.source_address is not None  # Master is never entered without one
        key = (priority, self.source_address)
        sends = self._sends.get(key)
        if sends is None:
            # Settings never change for an instance, so the messages depend only on the key.
            sends = self._sends[key] = self._build_sends(priority, self.source_address)
        self._out.extend(sends)
        self.stats.adverts_sent += len(sends)
        if priority == 0:
            self.stats.priority_zero_sent += len(sends)

    def _build_sends(self, priority: int, source: str) -> tuple[SendAdvert, ...]:
        if self.settings.unicast_peers:
            destinations: tuple[str, ...] = self.settings.unicast_peers
        elif self.settings.mcast_group is not None:
            destinations = (self.settings.mcast_group,)
        elif self.settings.family == 4:
            destinations = (vrrp_numbers.MULTICAST_V4,)
        else:
            destinations = (vrrp_numbers.MULTICAST_V6,)
        advert = vrrp_wire.Advertisement(
            version=self.settings.version,
            vrid=self.settings.vrid,
            priority=priority,
            # Past the one-byte count the rest stay out of the advert, as keepalived does
            # (they are still added and removed with the others).
            addresses=tuple(
                v.address for v in self.settings.virtual_addresses[: vrrp_wire.MAX_ADDRESSES]
            ),
            wire_interval=self.settings.wire_interval,
            auth_type=(
                vrrp_wire.AuthType.PASS if self._password is not None else vrrp_wire.AuthType.NONE
            ),
            auth_data=self._password or b"",
        )
        return tuple(
            SendAdvert(
                interface=self.settings.interface,
                source=source,
                destination=destination,
                payload=vrrp_wire.encode(advert, source=source, destination=destination),
            )
            for destination in destinations
        )

    def _gratuitous(self, count: int) -> None:
        if self.settings.virtual_addresses and count > 0:
            self._out.append(SendGratuitous(addresses=self.settings.virtual_addresses, count=count))

    # ---- state entries ----------------------------------------------------------------

    def _enter_master(self, now: float, reason: str) -> None:
        # RFC 9568 §6.4.1 / §6.4.2: send an ADVERTISEMENT, announce the addresses (gratuitous
        # ARP / unsolicited NA), set the Adver_Timer, transition to Master.
        self._report(State.MASTER, reason)
        self.state = State.MASTER
        self._cancel_timers()
        self._preempt_at = None
        self.stats.became_master += 1
        self.master_address = self.source_address
        self.master_adver_interval = self.settings.advert_interval
        if self.settings.virtual_addresses:
            self._out.append(AddVips(addresses=self.settings.virtual_addresses))
        self._send_advert(self.priority)
        self._gratuitous(self.settings.garp_master_repeat)
        self._adver_at = now + self.settings.advert_interval
        if self.settings.garp_master_delay > 0:
            self._garp_at = now + self.settings.garp_master_delay
            self._garp_repeat = self.settings.garp_master_repeat
        if self.settings.garp_master_refresh > 0:
            self._garp_refresh_at = now + self.settings.garp_master_refresh
        self._notify(NotifyState.MASTER)

    def _enter_backup(self, now: float, reason: str, *, down_in: float | None = None) -> None:
        if self.state is State.MASTER and self.settings.virtual_addresses:
            self._out.append(DelVips(addresses=self.settings.virtual_addresses))
        self._report(State.BACKUP, reason)
        self.state = State.BACKUP
        self._cancel_timers()
        delay = self._master_down_interval() if down_in is None else down_in
        self._master_down_at = now + delay
        self._notify(NotifyState.BACKUP)

    def _enter_fault(self, reason: str) -> None:
        if self.state is State.MASTER:
            # keepalived's behaviour (FAULT is not in the RFCs): a Master that faults says
            # goodbye with priority 0, as on shutdown (RFC 9568 §6.4.3), so a Backup takes over
            # after Skew_Time instead of a whole Master_Down_Interval. Without a source address
            # there is nothing to send from; the Backup then waits the full interval.
            if self.source_address is not None:
                self._send_advert(0)
            if self.settings.virtual_addresses:
                self._out.append(DelVips(addresses=self.settings.virtual_addresses))
        self._report(State.FAULT, reason)
        self.state = State.FAULT
        self._cancel_timers()
        self._notify(NotifyState.FAULT)

    def _leave_initialize_or_fault(self, now: float, reason: str) -> None:
        """RFC 9568 §6.4.1 Startup, also used when the last fault clears."""
        faults = self.fault_reasons()
        if faults:
            if self.state is not State.FAULT:
                self._enter_fault(faults[0])
            return
        if self.priority == OWNER_PRIORITY:
            self._enter_master(now, f"{reason}; address owner (priority 255)")
            return
        # RFC 9568 §6.4.1: Master_Adver_Interval = Advertisement_Interval, then wait
        # Master_Down_Interval (keepalived's `state MASTER`: wait one interval only).
        self.master_adver_interval = self.settings.advert_interval
        self.master_address = None
        down_in = None
        if self.state is State.INITIALIZE and self.settings.initial_state is State.MASTER:
            down_in = self.settings.advert_interval
        self._enter_backup(now, reason, down_in=down_in)

    def _refresh_fault(self, now: float, reason_up: str) -> None:
        """Enter or leave FAULT after something that can hold the instance there changed."""
        faults = self.fault_reasons()
        if self.state in (State.BACKUP, State.MASTER) and faults:
            self._enter_fault(faults[0])
        elif self.state is State.FAULT and not faults:
            self._leave_initialize_or_fault(now, reason_up)

    # ---- event handlers ---------------------------------------------------------------

    def _on_started(self, event: Started, now: float) -> None:
        if self.settings.preempt_delay > 0:
            # keepalived preempt_delay: no preemption for this long after start-up.
            self._preempt_at = now + self.settings.preempt_delay
        self._leave_initialize_or_fault(now, "startup")

    def _on_packet_not_running(self, event: PacketReceived, now: float) -> None:
        self.stats.drop(DropReason.NOT_RUNNING)

    def _on_packet_in_fault(self, event: PacketReceived, now: float) -> None:
        self.stats.drop(DropReason.FAULT_STATE)

    def _accept(self, event: PacketReceived) -> tuple[vrrp_wire.Advertisement, str] | None:
        """RFC 3768 §7.1 / RFC 9568 §7.1 receive checks: the advertisement and its normalised
        source address; None (counted) on a drop."""
        settings = self.settings
        if event.ttl != vrrp_numbers.VRRP_TTL:
            self.stats.drop(DropReason.TTL)
            return None
        try:
            advert = vrrp_wire.decode(
                event.payload, source=event.source, destination=event.destination
            )
        except vrrp_wire.WireError as error:
            self.stats.drop(error.reason)
            return None
        source = _normalise(event.source)
        if (":" in source) != (settings.family == 6):
            self.stats.drop(DropReason.FAMILY)
            return None
        if advert.version != settings.version:
            self.stats.drop(DropReason.VERSION_MISMATCH)
            return None
        if advert.vrid != settings.vrid:
            self.stats.drop(DropReason.VRID_MISMATCH)
            return None
        if source == self.source_address:
            self.stats.drop(DropReason.OWN_ADVERT)
            return None
        if self._peers and source not in self._peers:
            self.stats.drop(DropReason.UNICAST_PEER)
            return None
        if advert.version == 2:
            expected = (
                vrrp_wire.AuthType.PASS if self._password is not None else vrrp_wire.AuthType.NONE
            )
            if advert.auth_type not in _AUTH_TYPES:
                self.stats.drop(DropReason.AUTH_TYPE_INVALID)
                return None
            if advert.auth_type != expected:
                self.stats.drop(DropReason.AUTH_TYPE)
                return None
            if self._password is not None and advert.auth_data != self._password:
                self.stats.drop(DropReason.AUTH_MISMATCH)
                return None
            if advert.wire_interval != settings.wire_interval:
                # RFC 3768 §7.1: MUST verify the Adver Interval matches the local one.
                self.stats.drop(DropReason.INTERVAL_MISMATCH)
                return None
        elif advert.wire_interval == 0:
            self.stats.drop(DropReason.INTERVAL_INVALID)
            return None
        # RFC 3768 §7.1 / RFC 9568 §7.1: the address-list check is a MAY; like keepalived we
        # count (for logging) and keep processing, so a config drift never splits the brain.
        if not self._addresses_match(advert.addresses):
            self.stats.address_list_mismatch += 1
        self.stats.adverts_received += 1
        if advert.priority == 0:
            self.stats.priority_zero_received += 1
        return advert, source

    def _addresses_match(self, addresses: tuple[str, ...]) -> bool:
        seen, match = self._seen_addresses
        if addresses != seen:
            match = frozenset(_normalise(a) for a in addresses) == self._vip_set
            self._seen_addresses = (addresses, match)
        return match

    def _preemption_held(self, now: float) -> bool:
        """keepalived preempt_delay: hold off preempting a lower-priority Master for a while
        after start-up or after first seeing it."""
        if self.settings.preempt_delay <= 0:
            return False
        if self._preempt_at is None:
            self._preempt_at = now + self.settings.preempt_delay
        return now < self._preempt_at

    @_on_accepted
    def _on_packet_backup(
        self, event: PacketReceived, now: float, advert: vrrp_wire.Advertisement, source: str
    ) -> None:
        # RFC 9568 §6.4.2 Backup, "If an ADVERTISEMENT is received".
        if advert.priority == 0:
            # The Master is leaving: take over after Skew_Time only.
            self._master_down_at = now + self._skew_time()
            return
        preempt = self.settings.preempt_enabled or self.priority == OWNER_PRIORITY
        accepted = not preempt or advert.priority >= self.priority
        if accepted or self._preemption_held(now):
            if advert.version == 3:
                # RFC 9568 §6.4.2: learn Master_Adver_Interval, recompute the timers.
                self.master_adver_interval = advert.interval_seconds
            self.master_address = source
            interval = self._master_down_interval()
            self._master_down_at = now + interval
            if accepted:  # not while preempt_delay holds: that depends on the time
                self._echo = _Accepted(
                    event=event,
                    echo=Echo(event.payload, event.source, event.destination, event.ttl),
                    master_down_interval=interval,
                    address_mismatch=not self._seen_addresses[1],
                )
            return
        # Lower priority and we preempt: discard, let the Master_Down_Timer run out.
        self.stats.lower_priority_discarded += 1

    @_on_accepted
    def _on_packet_master(
        self, event: PacketReceived, now: float, advert: vrrp_wire.Advertisement, source: str
    ) -> None:
        # RFC 9568 §6.4.3 Master, "If an ADVERTISEMENT is received".
        if advert.priority == 0:
            self._send_advert(self.priority)
            self._adver_at = now + self.settings.advert_interval
            return
        local = self.priority
        higher = advert.priority > local
        tie_lost = advert.priority == local and (
            self.source_address is None or _address_key(source) > _address_key(self.source_address)
        )
        if higher or tie_lost:
            if self.settings.higher_prio_send_advert:
                self._send_advert(local)
            if advert.version == 3:
                self.master_adver_interval = advert.interval_seconds
            self.master_address = source
            if higher:
                reason = f"higher priority {advert.priority} from {source}"
            else:
                reason = f"equal priority {advert.priority} from higher address {source}"
            self._enter_backup(now, reason)
            return
        # A lower-priority Master exists (e.g. after a partition heals): keepalived answers at
        # once so it steps down without waiting an interval, unless lower_prio_no_advert.
        if not self.settings.lower_prio_no_advert:
            self._send_advert(local)
            self._adver_at = now + self.settings.advert_interval
        self._announce_to_lower_priority(now)

    def _announce_to_lower_priority(self, now: float) -> None:
        # Every lower-priority advert gets its burst, as keepalived answers each one: the clients
        # that followed each brief Master's gratuitous ARP come back at once, however close
        # together two such Masters were. The delayed second burst is re-armed from this one.
        settings = self.settings
        if settings.garp_lower_prio_repeat <= 0:
            return
        self._gratuitous(settings.garp_lower_prio_repeat)
        if settings.garp_lower_prio_delay > 0:
            self._garp_at = now + settings.garp_lower_prio_delay
            self._garp_repeat = settings.garp_lower_prio_repeat

    def _on_timer_backup(self, event: TimerFired, now: float) -> None:
        if self._master_down_at is not None and now >= self._master_down_at:
            self._enter_master(now, "master down timer expired")

    def _on_timer_master(self, event: TimerFired, now: float) -> None:
        if self._adver_at is not None and now >= self._adver_at:
            # RFC 9568 §6.4.3: send an ADVERTISEMENT, reset the Adver_Timer.
            self._send_advert(self.priority)
            self._adver_at = next_advert_due(self._adver_at, now, self.settings.advert_interval)
        if self._garp_at is not None and now >= self._garp_at:
            self._garp_at = None
            self._gratuitous(self._garp_repeat)
        if self._garp_refresh_at is not None and now >= self._garp_refresh_at:
            self._gratuitous(self.settings.garp_master_refresh_repeat)
            self._garp_refresh_at = now + self.settings.garp_master_refresh

    def _on_steady_backup(self, event: SteadyReport, now: float) -> None:
        echo = self._echo
        if event.count <= 0 or echo is None:
            return
        self.stats.adverts_received += event.count
        if echo.address_mismatch:
            self.stats.address_list_mismatch += event.count
        self._master_down_at = event.last_at + echo.master_down_interval

    def _on_steady_master(self, event: SteadyReport, now: float) -> None:
        if event.count <= 0 or self.source_address is None:
            return
        sends = self._sends.get((self.priority, self.source_address), ())
        self.stats.adverts_sent += event.count * len(sends)
        # As _on_timer_master left it after the last of those adverts.
        self._adver_at = event.last_at + self.settings.advert_interval

    def _on_steady_idle(self, event: SteadyReport, now: float) -> None:
        """Initialize and Fault have no steady state; a report there has nothing to move."""

    def _on_timer_idle(self, event: TimerFired, now: float) -> None:
        """FAULT has no timers; a late TimerFired from an earlier state is harmless."""

    def _on_track(self, event: TrackChanged, now: float) -> None:
        if not self.tracks.update(event.name, event.up, event.kind):
            return
        what = f"{event.kind or 'tracked object'} {event.name}"
        self._refresh_fault(now, f"{what} up")

    def _on_source_address(self, event: SourceAddressChanged, now: float) -> None:
        if self.settings.unicast_src_ip is not None:
            return  # a configured source address wins over the interface's primary
        self.source_address = None if event.address is None else _normalise(event.address)
        if self.state is State.MASTER:
            self.master_address = self.source_address
        self._refresh_fault(now, f"source address {self.source_address}")

    def _on_priority(self, event: PriorityChanged, now: float) -> None:
        if not 1 <= event.priority <= OWNER_PRIORITY:
            raise ValueError(f"priority {event.priority} is not 1..255")
        self.base_priority = event.priority
        # Takes effect with the next advertisement sent or received (RFC 9568 §6.4.2 recomputes
        # Skew_Time and Master_Down_Interval when an ADVERTISEMENT arrives).

    # Settings a running instance takes in place on a reload (`Reconfigured`); any other change
    # needs a new instance.
    RECONFIGURABLE = frozenset({"priority", "virtual_addresses"})

    def can_reconfigure(self, settings: InstanceSettings) -> bool:
        """Whether `settings` differ from the current ones only in RECONFIGURABLE fields."""
        if settings.name != self.settings.name:
            return False
        unchanged = {
            name: getattr(self.settings, name) for name in self.settings.__dataclass_fields__
        }
        return all(
            getattr(settings, name) == value
            for name, value in unchanged.items()
            if name not in self.RECONFIGURABLE
        )

    def _on_reconfigured(self, event: Reconfigured, now: float) -> None:
        new = event.settings
        if not self.can_reconfigure(new):
            raise ValueError(f"{self.name}: only {sorted(self.RECONFIGURABLE)} change in place")
        old = self.settings
        self.settings = new
        # A new base priority takes effect with the next advertisement sent or received, as a
        # PriorityChanged does (RFC 9568 §6.4.2).
        self.base_priority = new.priority
        self._vip_set = frozenset(_normalise(v.address) for v in new.virtual_addresses)
        self._sends.clear()  # the adverts carry the address list
        self._seen_addresses = ((), True)
        self._echo = None
        if self.state is not State.MASTER:
            return
        removed = tuple(v for v in old.virtual_addresses if v not in new.virtual_addresses)
        added = tuple(v for v in new.virtual_addresses if v not in old.virtual_addresses)
        if removed:
            self._out.append(DelVips(addresses=removed))
        if added:
            self._out.append(AddVips(addresses=added))
            if new.garp_master_repeat > 0:
                self._out.append(SendGratuitous(addresses=added, count=new.garp_master_repeat))

    def _on_shutdown(self, event: ShutdownRequested, now: float) -> None:
        if self.state is State.MASTER:
            # RFC 9568 §6.4.3 Shutdown: send an ADVERTISEMENT with Priority 0.
            self._send_advert(0)
            if self.settings.virtual_addresses:
                self._out.append(DelVips(addresses=self.settings.virtual_addresses))
        self._report(State.INITIALIZE, "shutdown requested")
        self.state = State.INITIALIZE
        self._cancel_timers()
        self._notify(NotifyState.STOP)

    def _on_shutdown_idle(self, event: ShutdownRequested, now: float) -> None:
        """Not started, or already stopped: nothing to undo."""

    def _on_sync_group(self, event: SyncGroupRequested, now: float) -> None:
        reason = f"sync group {event.group}: {event.reason}"
        if event.state is GroupRequest.FAULT:
            self.group_fault = reason
            if self.state in (State.BACKUP, State.MASTER):
                self._enter_fault(reason)
        elif event.state is GroupRequest.FAULT_CLEARED:
            self.group_fault = None
            self._refresh_fault(now, reason)
        elif event.state is GroupRequest.MASTER:
            if self.state is State.BACKUP:
                self._enter_master(now, reason)
        elif event.state is GroupRequest.BACKUP:
            if self.state is State.MASTER:
                self._enter_backup(now, reason)
        else:
            raise ValueError(f"sync group state {event.state!r} is not understood")


_TRANSITIONS: dict[tuple[State, type], _Handler] = {
    # Initialize: RFC 9568 §6.4.1. Tracking and addresses may be learnt before Startup.
    (State.INITIALIZE, Started): VrrpInstance._on_started,
    (State.INITIALIZE, PacketReceived): VrrpInstance._on_packet_not_running,
    (State.INITIALIZE, TrackChanged): VrrpInstance._on_track,
    (State.INITIALIZE, SourceAddressChanged): VrrpInstance._on_source_address,
    (State.INITIALIZE, PriorityChanged): VrrpInstance._on_priority,
    (State.INITIALIZE, Reconfigured): VrrpInstance._on_reconfigured,
    (State.INITIALIZE, ShutdownRequested): VrrpInstance._on_shutdown_idle,
    (State.INITIALIZE, SyncGroupRequested): VrrpInstance._on_sync_group,
    (State.INITIALIZE, SteadyReport): VrrpInstance._on_steady_idle,
    # Backup: RFC 9568 §6.4.2.
    (State.BACKUP, PacketReceived): VrrpInstance._on_packet_backup,
    (State.BACKUP, TimerFired): VrrpInstance._on_timer_backup,
    (State.BACKUP, TrackChanged): VrrpInstance._on_track,
    (State.BACKUP, SourceAddressChanged): VrrpInstance._on_source_address,
    (State.BACKUP, PriorityChanged): VrrpInstance._on_priority,
    (State.BACKUP, Reconfigured): VrrpInstance._on_reconfigured,
    (State.BACKUP, ShutdownRequested): VrrpInstance._on_shutdown,
    (State.BACKUP, SyncGroupRequested): VrrpInstance._on_sync_group,
    (State.BACKUP, SteadyReport): VrrpInstance._on_steady_backup,
    # Master: RFC 9568 §6.4.3.
    (State.MASTER, PacketReceived): VrrpInstance._on_packet_master,
    (State.MASTER, TimerFired): VrrpInstance._on_timer_master,
    (State.MASTER, TrackChanged): VrrpInstance._on_track,
    (State.MASTER, SourceAddressChanged): VrrpInstance._on_source_address,
    (State.MASTER, PriorityChanged): VrrpInstance._on_priority,
    (State.MASTER, Reconfigured): VrrpInstance._on_reconfigured,
    (State.MASTER, ShutdownRequested): VrrpInstance._on_shutdown,
    (State.MASTER, SyncGroupRequested): VrrpInstance._on_sync_group,
    (State.MASTER, SteadyReport): VrrpInstance._on_steady_master,
    # Fault (keepalived): waits for its tracked objects and source address to come back.
    (State.FAULT, PacketReceived): VrrpInstance._on_packet_in_fault,
    (State.FAULT, TimerFired): VrrpInstance._on_timer_idle,
    (State.FAULT, TrackChanged): VrrpInstance._on_track,
    (State.FAULT, SourceAddressChanged): VrrpInstance._on_source_address,
    (State.FAULT, PriorityChanged): VrrpInstance._on_priority,
    (State.FAULT, Reconfigured): VrrpInstance._on_reconfigured,
    (State.FAULT, ShutdownRequested): VrrpInstance._on_shutdown,
    (State.FAULT, SyncGroupRequested): VrrpInstance._on_sync_group,
    (State.FAULT, SteadyReport): VrrpInstance._on_steady_idle,
}
"""Every accepted (state, event type) pair. Missing on purpose: Started once running (the
instance was started twice) and TimerFired in Initialize (no timer was ever armed)."""


def transitions() -> frozenset[tuple[State, type]]:
    """The (state, event type) pairs the machine accepts; every other pair is a ProtocolError."""
    return frozenset(_TRANSITIONS)
