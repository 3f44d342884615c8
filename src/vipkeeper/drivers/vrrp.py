"""The asyncio driver: feeds the pure VRRP core and carries out its orders.

It owns the clock (`loop.time()`), one re-armed timer for all instances, and the order in which
effects reach the kernel. It decides nothing about the protocol: every decision comes back from
`Machine.handle()` as a list of effects, which are executed strictly in the order returned, one
machine's effects never overtaking another's.

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
import heapq
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from vipkeeper.core.effects import (
    AddVips,
    DelVips,
    Effect,
    ReportTransition,
    RunNotify,
    SendAdvert,
    SendGratuitous,
    VirtualAddress,
)
from vipkeeper.core.events import Event, PacketReceived, SteadyReport, TimerFired
from vipkeeper.core.steady import Steady
from vipkeeper.io.autopilot import HeldPacket
from vipkeeper.io.timerfd import make_timer

TRANSITIONS_KEPT = 64  # Driver.transitions keeps this many of the latest

log = logging.getLogger("vipkeeper")

# Seconds: timers due within this much of a wake-up are handled in it (see Driver._on_timer).
TIMER_SLACK = 0.001
# Seconds: a sleep longer than this uses the timerfd (see Driver._arm).
LONG_SLEEP = 0.05


class Machine(Protocol):
    """What the driver needs from a core object (an instance or a sync group)."""

    def handle(self, event: Event, now: float) -> list[Effect]: ...

    def next_deadline(self) -> float | None: ...


class AdvertSender(Protocol):
    def send(self, *, interface: str, source: str, destination: str, payload: bytes) -> None: ...


class AddressManager(Protocol):
    async def add(self, address: VirtualAddress) -> None: ...

    async def delete(self, address: VirtualAddress) -> None: ...


class GratuitousSender(Protocol):
    async def announce(self, addresses: tuple[VirtualAddress, ...], count: int) -> None: ...


NotifyHook = Callable[[RunNotify], Awaitable[None]]


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


@dataclass
class DriverStats:
    """Counters the driver keeps itself (the core keeps the per-instance protocol counters)."""

    packets_unclaimed: int = 0
    effect_errors: Counter[str] = field(default_factory=Counter)


class Driver:
    """Runs a set of machines on the current event loop.

    `machines` maps a name to a core machine (a `VrrpInstance`, or a `SyncGroup` whose `handle`
    also takes `instance=`). Received packets are routed by `route_packet`, a function from
    (interface, family, vrid) to (machine name, sync-group member or None), so the driver never
    parses more of a packet than the VRID byte.
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
        self._sender = sender
        self._addresses = addresses
        self._gratuitous = gratuitous
        self._notify = notify
        self._route_packet = route_packet
        self._before_timers = before_timers
        self._on_transition = on_transition
        self._latest = float("-inf")  # the time of the latest event fed
        self._in_timer = False
        self._stale_check_pending = False
        self._loop = loop or asyncio.get_running_loop()
        self._heap: list[tuple[float, str]] = []
        self._pushed: dict[str, float] = {}
        # Short sleeps on the loop's own timer; long ones on a timerfd (see _arm).
        self._handle: asyncio.TimerHandle | None = None
        self._long_timer = make_timer(self._loop, self._on_timer)
        self._long_armed = False
        self._armed_at: float | None = None
        self._pending: dict[str, deque[Effect]] = {}  # per machine, oldest first
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # Machines a pilot may carry in their steady state (the daemon names them), and those it
        # carries now, with the token to recall them by. A carried machine has no timer here.
        self._pilot = pilot
        # Optional adapter methods that act without waiting (see _run_now).
        self._add_now: Callable[[VirtualAddress], bool | None] | None = getattr(
            addresses, "add_now", None
        )
        self._announce_now: Callable[[tuple[VirtualAddress, ...], int], bool] | None = getattr(
            gratuitous, "announce_now", None
        )
        self._pilotable: frozenset[str] = frozenset()
        self._piloted: dict[str, int] = {}
        self._engage_pending: set[str] = set()
        self.stats = DriverStats()
        # The latest transitions, for tests and debugging; bounded so a flapping router cannot
        # grow the daemon's memory.
        self.transitions: deque[ReportTransition] = deque(maxlen=TRANSITIONS_KEPT)

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
            now = self._loop.time()
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

    # The heap holds, for every machine with a deadline D, an entry at D or earlier;
    # `_pushed[name]` is the newest entry's deadline. An entry that is not the machine's current
    # deadline is stale: popping it re-pushes the current one if no newer entry exists. Packets
    # read inside a timer wake-up therefore push nothing: a Backup restarting its timer
    # there leaves its old entry to be popped, and re-pushed, in the same wake-up.

    def _schedule(self, name: str, machine: Machine) -> None:
        deadline = machine.next_deadline()
        if deadline is None:
            return
        pushed = self._pushed.get(name)
        if pushed == deadline or (self._in_timer and pushed is not None and pushed < deadline):
            return
        self._pushed[name] = deadline
        heapq.heappush(self._heap, (deadline, name))
        if self._armed_at is None or deadline < self._armed_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        self._armed_at = deadline
        # epoll_wait may wake up to 0.1 % of its timeout late (the kernel's slack for sleeping
        # tasks): 3.6 ms on a 3.6 s Master_Down_Interval. Beyond LONG_SLEEP a timerfd keeps the
        # deadline; below it the slack is under 50 us and the loop's timer costs less.
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if deadline - self._loop.time() > LONG_SLEEP:
            self._long_timer.arm(deadline)
            self._long_armed = True
            return
        if self._long_armed:
            self._long_timer.cancel()
            self._long_armed = False
        self._handle = self._loop.call_at(deadline, self._on_timer)

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._long_armed:
            self._long_timer.cancel()
            self._long_armed = False

    def _pop(self) -> tuple[float, str, bool]:
        """Pop the earliest entry: (deadline, machine name, whether it is still current)."""
        deadline, name = heapq.heappop(self._heap)
        if self._pushed.get(name) == deadline:
            del self._pushed[name]
        machine = self.machines.get(name)  # None: removed by a reload
        # A machine the pilot carries has no timer here.
        current = None if machine is None or name in self._piloted else machine.next_deadline()
        if current == deadline:
            return deadline, name, True
        if current is not None and name not in self._pushed:
            self._pushed[name] = current
            heapq.heappush(self._heap, (current, name))
        return deadline, name, False

    def _top_is_current(self) -> bool:
        deadline, name = self._heap[0]
        machine = self.machines.get(name)
        return (
            machine is not None
            and name not in self._piloted
            and machine.next_deadline() == deadline
        )

    def _drop_stale_timer(self) -> None:
        # A packet usually pushes a Backup's deadline later: rather than wake for nothing at the
        # old one, re-arm at the earliest deadline that still counts. (Packets read inside a
        # timer wake-up need none of this: _on_timer re-arms when it is done.)
        self._stale_check_pending = False
        self._rearm_for_current()

    def _rearm_for_current(self) -> None:
        """Drop stale entries off the top of the heap and re-arm at the first current one."""
        if self._armed_at is None or not self._heap or self._top_is_current():
            return
        while self._heap and not self._top_is_current():
            self._pop()
        if not self._heap:
            self._disarm()
            self._armed_at = None
        elif self._heap[0][0] != self._armed_at:
            self._arm(self._heap[0][0])

    def _on_timer(self) -> None:
        self._armed_at = None
        self._handle = None
        self._long_armed = False
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
            horizon = now + TIMER_SLACK
            due: dict[str, float] = {}
            while self._heap and self._heap[0][0] <= horizon:
                deadline, name, current = self._pop()
                if current and name not in due:
                    due[name] = deadline
            while self._heap and not self._top_is_current():
                self._pop()
        finally:
            self._in_timer = False
        if self._heap:
            self._arm(self._heap[0][0])
        for name, deadline in due.items():
            self.feed(name, TimerFired(), now=max(now, deadline))

    # -- the pilot ----------------------------------------------------------------------------

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
            if machine is None or name in self._piloted or self._pending.get(name):
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
            self._pushed.pop(name, None)  # its heap entries are stale from now on
            engaged = True
        if engaged:  # wake for the machines still here, not for the ones handed over
            self._rearm_for_current()

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
            self._disarm()
            self._on_timer()

    # -- effects ------------------------------------------------------------------------------

    def _dispatch(self, name: str, effects: list[Effect]) -> None:
        reports: list[ReportTransition] = []
        queued = bool(self._pending.get(name))
        for effect in effects:
            if isinstance(effect, ReportTransition):
                # Logged, and announced to on_transition, after the batch's other effects: a
                # takeover's addresses and gratuitous ARP must not wait for a log line or for
                # the receive modes to be switched (the worker started below runs first).
                reports.append(effect)
                continue
            # Fast path: while nothing of this machine's is queued ahead of it, an effect that
            # can be carried out without waiting is done at once (order is kept); the first
            # one that needs waiting sends it and everything after it to the worker.
            if not queued and self._run_now(name, effect):
                continue
            queued = True
            self._enqueue(name, effect)
        for report in reports:
            if self._on_transition is not None:
                self._on_transition(report)
            self._enqueue(name, report)

    def _enqueue(self, name: str, effect: Effect) -> None:
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = deque()
        pending.append(effect)
        if name not in self._workers:
            self._idle.clear()
            self._workers[name] = self._loop.create_task(
                self._run_effects(name, pending), name=f"vipkeeper-effects-{name}"
            )

    def _run_now(self, name: str, effect: Effect) -> bool:
        """Carry `effect` out without waiting if it can be; False: it needs the worker.

        An advert always can. On a takeover, the VIPs can too (the kernel adds an address
        inside the netlink send) and so can the gratuitous ARP (packet sends that do not
        block), when the adapters offer `add_now` / `announce_now`: the first ARP then leaves
        in the same wake-up as the timer, not one loop iteration and a task later.
        """
        if isinstance(effect, SendAdvert):
            self._send(effect)
            return True
        if isinstance(effect, AddVips) and self._add_now is not None:
            for address in effect.addresses:
                try:
                    if self._add_now(address) is None:
                        return False  # the worker adds them all (adding is idempotent)
                except Exception as exc:  # as in the worker: the effect fails, the rest goes on
                    self.stats.effect_errors["AddVips"] += 1
                    log.error("%s: AddVips failed: %s", name, exc)
                    return True
            return True
        if isinstance(effect, SendGratuitous) and self._announce_now is not None:
            return self._announce_now(effect.addresses, effect.count)
        return False

    def _send(self, effect: SendAdvert) -> None:
        try:
            self._sender.send(
                interface=effect.interface,
                source=effect.source,
                destination=effect.destination,
                payload=effect.payload,
            )
        except OSError as exc:
            self.stats.effect_errors["send_advert"] += 1
            log.warning("sending advertisement to %s failed: %s", effect.destination, exc)

    async def _run_effects(self, name: str, pending: deque[Effect]) -> None:
        """Carry out one machine's effects in order until none is left."""
        try:
            while pending:
                effect = pending[0]
                try:
                    await self._execute(name, effect)
                except Exception as exc:  # an effect failing must not stop the daemon
                    self.stats.effect_errors[type(effect).__name__] += 1
                    log.error("%s: %s failed: %s", name, type(effect).__name__, exc)
                finally:
                    pending.popleft()
        finally:
            del self._workers[name]
            if self._pending.get(name) is pending:
                del self._pending[name]
            if not self._workers:
                self._idle.set()
            if name in self._pilotable:
                self._want_pilot(name)

    async def _execute(self, name: str, effect: Effect) -> None:
        if isinstance(effect, SendAdvert):
            self._send(effect)
        elif isinstance(effect, AddVips):
            for address in effect.addresses:
                await self._addresses.add(address)
        elif isinstance(effect, DelVips):
            for address in effect.addresses:
                await self._addresses.delete(address)
        elif isinstance(effect, SendGratuitous):
            await self._gratuitous.announce(effect.addresses, effect.count)
        elif isinstance(effect, ReportTransition):
            self.transitions.append(effect)
            log.info(
                "%s: %s -> %s (%s)",
                effect.instance,
                effect.old,
                effect.new,
                effect.reason,
                extra={
                    "instance": effect.instance,
                    "old_state": effect.old,
                    "new_state": effect.new,
                    "reason": effect.reason,
                },
            )
        elif isinstance(effect, RunNotify):
            await self._notify(effect)
        else:  # pragma: no cover - the Effect union is closed
            raise TypeError(f"unknown effect {effect!r}")

    async def drain(self) -> None:
        """Wait until every queued effect has been carried out."""
        await self._idle.wait()

    async def stop(self) -> None:
        for name in list(self._piloted):
            self._take_back(name)
        if self._pilot is not None:
            self._pilotable = frozenset()
            self._pilot.close()
        self._disarm()
        self._long_timer.close()
        self._armed_at = None
        await self.drain()
