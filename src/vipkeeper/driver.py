"""The asyncio driver: feeds the pure VRRP core and carries out its orders.

It owns the clock (`loop.time()`), one re-armed timer for all instances, and the order in which
effects reach the kernel. It decides nothing about the protocol: every decision comes back from
`Machine.handle()` as a list of effects, which are executed strictly in the order returned, one
machine's effects never overtaking another's.

It must never block: sending an advertisement is a non-blocking sendto; netlink changes, gratuitous
ARP bursts and notify scripts are awaited by one effect worker task so the receive path keeps
running while they complete.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import Counter
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
from vipkeeper.core.events import Event, PacketReceived, TimerFired

log = logging.getLogger("vipkeeper")

# Seconds: timers due within this much of a wake-up are handled in it (see Driver._on_timer).
TIMER_SLACK = 0.001


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
    ) -> None:
        self.machines = dict(machines)
        self._sender = sender
        self._addresses = addresses
        self._gratuitous = gratuitous
        self._notify = notify
        self._route_packet = route_packet
        self._loop = loop or asyncio.get_running_loop()
        self._heap: list[tuple[float, str]] = []
        self._pushed: dict[str, float] = {}
        self._armed: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self._queue: asyncio.Queue[tuple[str, Effect] | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.stats = DriverStats()
        self.transitions: list[ReportTransition] = []

    # -- inputs -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._worker = self._loop.create_task(self._run_effects(), name="vipkeeper-effects")

    def feed(
        self, name: str, event: Event, *, member: str | None = None, now: float | None = None
    ) -> None:
        """Give one event to one machine now, queue its effects and re-arm the timer.

        `member` names the instance inside a sync group that the event is for (a packet or a
        tracked object of that instance); None gives it to the machine as a whole.
        """
        machine = self.machines[name]
        if now is None:
            now = self._loop.time()
        if member is None:
            effects = machine.handle(event, now)
        else:
            effects = cast(Any, machine).handle(event, now, instance=member)
        self._dispatch(name, effects)
        self._schedule(name, machine)

    def feed_all(self, event: Event, names: Iterable[str] | None = None) -> None:
        for name in list(self.machines if names is None else names):
            self.feed(name, event)

    def packet_received(
        self,
        *,
        interface: str,
        family: int,
        source: str,
        destination: str,
        ttl: int,
        payload: bytes,
    ) -> None:
        """Called by the socket adapter for every protocol-112 packet."""
        vrid = payload[1] if len(payload) > 1 else -1
        route = self._route_packet(interface, family, vrid)
        if route is None:
            # Another router's VRID, or garbage too short to carry one: not ours to judge.
            self.stats.packets_unclaimed += 1
            return
        name, member = route
        self.feed(
            name,
            PacketReceived(source=source, destination=destination, ttl=ttl, payload=payload),
            member=member,
        )

    # -- timers -------------------------------------------------------------------------------

    def _schedule(self, name: str, machine: Machine) -> None:
        deadline = machine.next_deadline()
        if deadline is None or self._pushed.get(name) == deadline:
            return
        self._pushed[name] = deadline
        heapq.heappush(self._heap, (deadline, name))
        if self._armed_at is None or deadline < self._armed_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_at = deadline
        self._armed = self._loop.call_at(deadline, self._on_timer)

    def _is_current(self, deadline: float, name: str) -> bool:
        # Heap entries are invalidated lazily: one counts only while it is still the machine's
        # current deadline, so re-arming never has to search the heap.
        return self.machines[name].next_deadline() == deadline

    def _on_timer(self) -> None:
        self._armed = None
        self._armed_at = None
        now = self._loop.time()
        # Deadlines a hair in the future fire in this same wake-up, told the time they were
        # due: hundreds of instances then cost one wake-up per advert round, not one each.
        horizon = now + TIMER_SLACK
        due: list[tuple[str, float]] = []
        while self._heap and self._heap[0][0] <= horizon:
            deadline, name = heapq.heappop(self._heap)
            if self._pushed.get(name) == deadline:
                del self._pushed[name]
            if all(name != n for n, _ in due) and self._is_current(deadline, name):
                due.append((name, deadline))
        while self._heap and not self._is_current(*self._heap[0]):
            deadline, name = heapq.heappop(self._heap)
            if self._pushed.get(name) == deadline:
                del self._pushed[name]
        if self._heap:
            self._arm(self._heap[0][0])
        for name, deadline in due:
            self.feed(name, TimerFired(), now=max(now, deadline))

    # -- effects ------------------------------------------------------------------------------

    def _dispatch(self, name: str, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendAdvert) and self._queue.empty():
                # Fast path: nothing is pending ahead of it, so sending now keeps the order.
                self._send(effect)
            else:
                self._queue.put_nowait((name, effect))

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

    async def _run_effects(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            name, effect = item
            try:
                await self._execute(name, effect)
            except Exception as exc:  # an effect failing must not stop the daemon
                self.stats.effect_errors[type(effect).__name__] += 1
                log.error("%s: %s failed: %s", name, type(effect).__name__, exc)
            finally:
                self._queue.task_done()

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
        await self._queue.join()

    async def stop(self) -> None:
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
            self._worker = None
