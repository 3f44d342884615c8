"""The VRRP driver's effects: each machine's orders carried out in order, one worker a machine.

Owns the adapters that act (advert sender, addresses, gratuitous ARP / NA, notify) and the rule
that an effect needing no wait runs at once while nothing of its machine is queued before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from vipkeeper.core import effects as orders
from vipkeeper.core.effects import Effect, ReportTransition
from vipkeeper.core.records import record
from vipkeeper.core.virtual_address import VirtualAddress

TRANSITIONS_KEPT = 64  # EffectRunner.transitions keeps this many of the latest

log = logging.getLogger("vipkeeper")


class AdvertSender(Protocol):
    def send(self, *, interface: str, source: str, destination: str, payload: bytes) -> None: ...


class AddressManager(Protocol):
    async def add(self, address: VirtualAddress) -> None: ...

    async def delete(self, address: VirtualAddress) -> None: ...


class GratuitousSender(Protocol):
    async def announce(self, addresses: tuple[VirtualAddress, ...], count: int) -> None: ...


NotifyHook = Callable[[orders.RunNotify], Awaitable[None]]


@record
class Adapters:
    """What the effects act through: the advert sender, addresses, gratuitous ARP / NA, notify."""

    sender: AdvertSender
    addresses: AddressManager
    gratuitous: GratuitousSender
    notify: NotifyHook


@dataclass
class DriverStats:
    """Counters the driver keeps itself (the core keeps the per-instance protocol counters)."""

    packets_unclaimed: int = 0
    effect_errors: Counter[str] = field(default_factory=Counter)


class EffectRunner:
    """Carries out every machine's effects for one driver; no machine waits for another."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        adapters: Adapters,
        stats: DriverStats,
        on_transition: Callable[[ReportTransition], None] | None,
        on_idle: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._adapters = adapters
        self._on_transition = on_transition
        self._on_idle = on_idle  # told when a machine's queue has run empty
        self.stats = stats
        self._pending: dict[str, deque[Effect]] = {}  # per machine, oldest first
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # Optional adapter methods that act without waiting (see _run_now).
        self._add_now: Callable[[VirtualAddress], bool | None] | None = getattr(
            adapters.addresses, "add_now", None
        )
        self._announce_now: Callable[[tuple[VirtualAddress, ...], int], bool] | None = getattr(
            adapters.gratuitous, "announce_now", None
        )
        # The latest transitions, for tests and debugging; bounded so a flapping router cannot
        # grow the daemon's memory.
        self.transitions: deque[ReportTransition] = deque(maxlen=TRANSITIONS_KEPT)

    def has_pending(self, name: str) -> bool:
        return bool(self._pending.get(name))

    def dispatch(self, name: str, effects: list[Effect]) -> None:
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
        if isinstance(effect, orders.SendAdvert):
            self._send(effect)
            return True
        if isinstance(effect, orders.AddVips) and self._add_now is not None:
            for address in effect.addresses:
                try:
                    if self._add_now(address) is None:
                        return False  # the worker adds them all (adding is idempotent)
                except Exception as exc:  # as in the worker: the effect fails, the rest goes on
                    self.stats.effect_errors["AddVips"] += 1
                    log.error("%s: AddVips failed: %s", name, exc)
                    return True
            return True
        if isinstance(effect, orders.SendGratuitous) and self._announce_now is not None:
            return self._announce_now(effect.addresses, effect.count)
        return False

    def _send(self, effect: orders.SendAdvert) -> None:
        try:
            self._adapters.sender.send(
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
            self._on_idle(name)

    async def _execute(self, name: str, effect: Effect) -> None:
        if isinstance(effect, orders.SendAdvert):
            self._send(effect)
        elif isinstance(effect, orders.AddVips):
            for address in effect.addresses:
                await self._adapters.addresses.add(address)
        elif isinstance(effect, orders.DelVips):
            for address in effect.addresses:
                await self._adapters.addresses.delete(address)
        elif isinstance(effect, orders.SendGratuitous):
            await self._adapters.gratuitous.announce(effect.addresses, effect.count)
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
        elif isinstance(effect, orders.RunNotify):
            await self._adapters.notify(effect)
        else:  # pragma: no cover - the Effect union is closed
            raise TypeError(f"unknown effect {effect!r}")

    async def drain(self) -> None:
        """Wait until every queued effect has been carried out."""
        await self._idle.wait()
