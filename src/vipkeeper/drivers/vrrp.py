"""The asyncio driver: feeds the pure VRRP core and carries out its orders.

It owns the clock (`loop.time()`), the routing of packets to machines and the hand-over to and
from the autopilot; its timers are `vrrp_timers.Deadlines` (one re-armed timer for all
instances) and its effects `vrrp_effects.EffectRunner`. It decides nothing about the protocol:
every decision comes back from `Machine.handle()` as a list of effects, which are executed
strictly in the order returned, one machine's effects never overtaking another's.

It must never block: sending an advertisement is a non-blocking sendto; netlink changes, gratuitous
ARP bursts and notify scripts are awaited by a worker task per machine, so the receive path keeps
running while they complete and one machine's slow effects (a notify script, a burst of
gratuitous ARPs, 200 VIPs being added) never delay another machine's advertisements.

Time only moves forward: a packet may be handed over late (a lazily read socket, see
`io.vrrp_socket`) with the time it arrived, and the driver feeds it at that time unless an event
it has already fed was later; `before_timers` runs first in every timer wake-up, so packets that
arrived before a deadline are heard before the deadline is acted on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from vipkeeper.core.effects import Effect, ReportTransition
from vipkeeper.core.events import Event, PacketReceived, SteadyReport, TimerFired
from vipkeeper.core.steady import Steady
from vipkeeper.drivers.vrrp_effects import (
    Adapters,
    AddressManager,
    AdvertSender,
    DriverStats,
    EffectRunner,
    GratuitousSender,
    NotifyHook,
)
from vipkeeper.drivers.vrrp_timers import Deadlines

if TYPE_CHECKING:  # the autopilot loads once the instances are in the election
    from vipkeeper.io.autopilot import HeldPacket

log = logging.getLogger("vipkeeper")

# Seconds: timers due within this much of a wake-up are handled in it (see Driver._on_timer).
TIMER_SLACK = 0.001


class Machine(Protocol):
    """What the driver needs from a core object (an instance or a sync group)."""

    def handle(self, event: Event, now: float) -> list[Effect]: ...

    def next_deadline(self) -> float | None: ...


class Recalled(Protocol):
    @property
    def report(self) -> SteadyReport: ...

    @property
    def held(self) -> HeldPacket | None: ...


class Pilot(Protocol):
    """Carries machines through their steady states off the loop (`io.autopilot.Autopilot`)."""

    def engage(
        self, name: str, steady: Steady, on_return: Callable[[str, int], None]
    ) -> int | None: ...

    def recall(self, name: str, token: int | None = None) -> Recalled | None: ...

    def close(self) -> None: ...


class Driver:
    """Runs a set of machines on the current event loop.

    `machines` maps a name to a core machine (a `VrrpInstance`, or a `SyncGroup` whose `handle`
    also takes `instance=`). Received packets are routed by `route_packet`, a function from
    (interface, family, vrid) to (machine name, sync-group member or None), so the driver never
    parses more of a packet than the VRID byte. Deadlines are kept by `Deadlines`
    (`vrrp_timers`), effects carried out by `EffectRunner` (`vrrp_effects`).
    """

    def __init__(
        self,
        *,
        machines: Mapping[str, Machine],
        sender: AdvertSender,
        addresses: AddressManager,
        gratuitous: GratuitousSender,
        notify: NotifyHook,
        route_packet: Callable[[str, int, int], tuple[str, str | None] | None],
        loop: asyncio.AbstractEventLoop | None = None,
        before_timers: Callable[[], None] | None = None,
        on_transition: Callable[[ReportTransition], None] | None = None,
        pilot: Pilot | None = None,
    ) -> None:
        self.machines = dict(machines)
        self._route_packet = route_packet
        self._before_timers = before_timers
        self._latest = float("-inf")  # the time of the latest event fed
        self._held: float | None = None  # hold_clock
        self._in_timer = False
        self._stale_check_pending = False
        self._loop = loop or asyncio.get_running_loop()
        self.stats = DriverStats()
        self._deadlines = Deadlines(self._loop, self._on_timer, self._current_deadline)
        self._effects = EffectRunner(
            loop=self._loop,
            adapters=Adapters(
                sender=sender, addresses=addresses, gratuitous=gratuitous, notify=notify
            ),
            stats=self.stats,
            on_transition=on_transition,
            on_idle=self._effects_done,
        )
        # Machines a pilot may carry in their steady state (the daemon names them), and those it
        # carries now, with the token to recall them by. A carried machine has no timer here.
        self._pilot = pilot
        self._pilotable: frozenset[str] = frozenset()
        self._piloted: dict[str, int] = {}
        self._engage_pending: set[str] = set()

    # -- inputs -------------------------------------------------------------------------------

    def feed(
        self, name: str, event: Event, *, member: str | None = None, now: float | None = None
    ) -> None:
        """Give one event to one machine now, queue its effects and re-arm the timer.

        `member` names the instance inside a sync group that the event is for (a packet or a
        tracked object of that instance); None gives it to the machine as a whole.
        """
        machine = self.machines[name]
        if name in self._piloted:
            self._take_back(name)
        if now is None:
            now = self._loop.time() if self._held is None else self._held
        if now < self._latest:
            now = self._latest
        else:
            self._latest = now
        if member is None:
            effects = machine.handle(event, now)
        else:
            effects = cast(Any, machine).handle(event, now, instance=member)
        self._dispatch(name, effects)
        self._schedule(name, machine)
        if name in self._pilotable:
            self._want_pilot(name)

    def hold_clock(self, at: float | None) -> None:
        """Date the events fed without a time `at` (on the loop's clock), until called with
        None: the daemon's start feeds its instances as of when they entered the election
        (`vipkeeper.launch`), before this module was even loaded."""
        self._held = at

    def feed_all(self, event: Event, names: Iterable[str] | None = None) -> None:
        for name in list(self.machines if names is None else names):
            self.feed(name, event)

    def receive(
        self, interface: str, family: int, packet: PacketReceived, received_at: float | None
    ) -> None:
        """Called by the socket adapter for every protocol-112 packet (`received_at`: when it
        arrived, on the loop's clock; None means now)."""
        payload = packet.payload
        vrid = payload[1] if len(payload) > 1 else -1
        route = self._route_packet(interface, family, vrid)
        if route is None:
            # Another router's VRID, or garbage too short to carry one: not ours to judge.
            self.stats.packets_unclaimed += 1
            return
        name, member = route
        self.feed(name, packet, member=member, now=received_at)
        if not self._in_timer and not self._stale_check_pending:
            # Once per batch of packets, after it: see _drop_stale_timer.
            self._stale_check_pending = True
            self._loop.call_soon(self._drop_stale_timer)

    # -- timers -------------------------------------------------------------------------------

    # -- timers -------------------------------------------------------------------------------

    def _current_deadline(self, name: str) -> float | None:
        machine = self.machines.get(name)  # None: removed by a reload
        # A machine the pilot carries has no timer here.
        return None if machine is None or name in self._piloted else machine.next_deadline()

    def _schedule(self, name: str, machine: Machine) -> None:
        self._deadlines.schedule(name, machine.next_deadline(), in_timer=self._in_timer)

    def _drop_stale_timer(self) -> None:
        # A packet usually pushes a Backup's deadline later: rather than wake for nothing at the
        # old one, re-arm at the earliest deadline that still counts. (Packets read inside a
        # timer wake-up need none of this: _on_timer re-arms when it is done.)
        self._stale_check_pending = False
        self._deadlines.rearm_for_current()

    def _on_timer(self) -> None:
        self._deadlines.fired()
        self._in_timer = True
        try:
            if self._before_timers is not None:
                try:
                    self._before_timers()
                except Exception:  # reading packets must not stop the timers
                    log.exception("reading packets before the timers failed")
            now = self._loop.time()
            # Deadlines a hair in the future fire in this same wake-up, told the time they were
            # due: hundreds of instances then cost one wake-up per advert round, not one each.
            due = self._deadlines.take_due(now + TIMER_SLACK)
        finally:
            self._in_timer = False
        self._deadlines.arm_next()
        for name, deadline in due.items():
            self.feed(name, TimerFired(), now=max(now, deadline))

    # -- the pilot ----------------------------------------------------------------------------

    def set_pilot(self, pilot: Pilot) -> None:
        """Give the driver its pilot (the daemon does once its instances are in the election);
        the pilotable machines already steady are handed over."""
        self._pilot = pilot
        for name in self._pilotable:
            self._want_pilot(name)

    @property
    def pilotable(self) -> frozenset[str]:
        """The machines the pilot may carry; one dropped from the set is taken back at once
        (a reload that puts a second instance on its socket)."""
        return self._pilotable

    @pilotable.setter
    def pilotable(self, names: Iterable[str]) -> None:
        self._pilotable = frozenset(names)
        for name in [n for n in self._piloted if n not in self._pilotable]:
            self._take_back(name)

    def _want_pilot(self, name: str) -> None:
        # Once the current batch of events is handled: a machine is handed over only when
        # nothing of its own is in flight.
        if not self._engage_pending:
            self._loop.call_soon(self._engage)
        self._engage_pending.add(name)

    def _engage(self) -> None:
        names, self._engage_pending = self._engage_pending, set()
        pilot = self._pilot
        if pilot is None:
            return
        engaged = False
        for name in names:
            machine = self.machines.get(name)
            if machine is None or name in self._piloted or self._effects.has_pending(name):
                continue
            if name not in self._pilotable:  # dropped since it was queued
                continue
            steady_of = getattr(machine, "steady", None)
            steady = steady_of() if steady_of is not None else None
            if steady is None:
                continue
            token = pilot.engage(name, steady, self._pilot_returned)
            if token is None:
                continue
            self._piloted[name] = token
            self._deadlines.forget(name)  # its heap entries are stale from now on
            engaged = True
        if engaged:  # wake for the machines still here, not for the ones handed over
            self._deadlines.rearm_for_current()

    def _take_back(self, name: str, token: int | None = None) -> bool:
        """Recall `name` from the pilot and bring the machine up to date; False if the pilot
        did not hold it (under that token)."""
        assert self._pilot is not None
        current = self._piloted.get(name)
        if current is None or (token is not None and token != current):
            return False
        del self._piloted[name]
        recalled = self._pilot.recall(name, current)
        machine = self.machines.get(name)
        if recalled is None or machine is None:
            return False
        # The report carries its own times; it does not move the clock, so a held packet is
        # still fed at its arrival time.
        now = max(self._loop.time(), self._latest)
        self._dispatch(name, machine.handle(recalled.report, now))
        self._schedule(name, machine)
        if recalled.held is not None:
            held = recalled.held
            self.receive(held.interface, held.family, held.packet, held.arrived)
        return True

    def catch_up(self) -> None:
        """Bring every machine the pilot carries up to date (counters, timers) for a reader such
        as the status document; each goes back to the pilot once it is idle again."""
        for name in list(self._piloted):
            if self._take_back(name) and name in self._pilotable:
                self._want_pilot(name)

    def _pilot_returned(self, name: str, token: int) -> None:
        """The pilot hands `name` back (a packet it cannot judge, a deadline, a failed send),
        or a socket it held is being read by the loop."""
        if not self._take_back(name, token):
            return
        machine = self.machines.get(name)
        deadline = machine.next_deadline() if machine is not None else None
        if deadline is not None and deadline <= self._loop.time() + TIMER_SLACK:
            # Due already (a silent Master): act now rather than one more loop iteration later.
            self._deadlines.disarm()
            self._on_timer()

    # -- effects ------------------------------------------------------------------------------

    @property
    def transitions(self) -> deque[ReportTransition]:
        """The latest transitions carried out, oldest first (bounded)."""
        return self._effects.transitions

    def _dispatch(self, name: str, effects: list[Effect]) -> None:
        self._effects.dispatch(name, effects)

    def _effects_done(self, name: str) -> None:
        if name in self._pilotable:
            self._want_pilot(name)

    async def drain(self) -> None:
        """Wait until every queued effect has been carried out."""
        await self._effects.drain()

    async def stop(self) -> None:
        for name in list(self._piloted):
            self._take_back(name)
        if self._pilot is not None:
            self._pilotable = frozenset()
            self._pilot.close()
        self._deadlines.close()
        await self.drain()
