"""FakeLan: N VRRP cores on one simulated segment, in memory, on a FakeClock.

Owns: delivering every SendAdvert a router returns to the other live, reachable routers as a
PacketReceived with TTL 255 (multicast to all, unicast to the router holding the destination
address), firing each router's timer at its deadline, and faults a test wants to inject:
killing (silent death), stopping (graceful shutdown), restarting, priority changes, tracked
objects going down, partitions. It also applies AddVips / DelVips to a per-router set, so a
test can ask who holds a virtual address.
Must never: open a socket, sleep, or read the real clock. Delivery takes zero time.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import deque
from dataclasses import dataclass, field

from vipkeeper.core.effects import AddVips, DelVips, Effect, SendAdvert
from vipkeeper.core.events import (
    Event,
    PacketReceived,
    PriorityChanged,
    ShutdownRequested,
    SourceAddressChanged,
    Started,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.states import State, TrackKind
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.core.vrrp_settings import InstanceSettings
from vipkeeper.testing.clock import FakeClock
from vipkeeper.testing.recorder import EffectRecorder


@dataclass
class Router:
    """One simulated host running one VRRP instance."""

    name: str
    address: str
    settings: InstanceSettings
    instance: VrrpInstance
    alive: bool = False
    vips: set[str] = field(default_factory=set)

    @property
    def state(self) -> State:
        return self.instance.state

    @property
    def priority(self) -> int:
        return self.instance.priority


class FakeLan:
    """A broadcast segment of VRRP routers driven by a FakeClock."""

    def __init__(self, clock: FakeClock | None = None, *, delivery_limit: int = 10_000) -> None:
        self.clock = clock or FakeClock()
        self.routers: dict[str, Router] = {}
        self.recorder = EffectRecorder()
        self.delivery_limit = delivery_limit  # per instant: guards against packet storms
        self._groups: dict[str, int] | None = None
        self._queue: deque[tuple[Router, SendAdvert]] = deque()

    # ---- building the LAN -------------------------------------------------------------

    def add_router(
        self,
        name: str,
        settings: InstanceSettings,
        *,
        address: str | None = None,
        start: bool = True,
    ) -> Router:
        """Add a host; `address` is its primary address (defaults to settings.unicast_src_ip)."""
        if name in self.routers:
            raise ValueError(f"router {name} already exists")
        primary = address or settings.unicast_src_ip
        if primary is None:
            raise ValueError("a router needs an address (or settings.unicast_src_ip)")
        router = Router(
            name=name,
            address=str(ipaddress.ip_address(primary)),
            settings=settings,
            instance=VrrpInstance(settings),
        )
        self.routers[name] = router
        if start:
            self.start(name)
        return router

    # ---- faults and operations ----------------------------------------------------------

    def start(self, name: str) -> list[Effect]:
        """Boot the router's instance: tell it its address, then Started."""
        router = self.routers[name]
        if router.alive:
            raise ValueError(f"router {name} is already running")
        router.alive = True
        out = self.deliver(name, SourceAddressChanged(address=router.address))
        return out + self.deliver(name, Started())

    def kill(self, name: str) -> None:
        """Silent death (power loss): no shutdown advert, the router stops taking part."""
        self.routers[name].alive = False

    def stop(self, name: str) -> list[Effect]:
        """Graceful shutdown (SIGTERM): priority-0 advert, VIPs removed, then gone."""
        out = self.deliver(name, ShutdownRequested())
        self.routers[name].alive = False
        return out

    def restart(self, name: str) -> list[Effect]:
        """A fresh process on the same host: new core from the current settings, VIPs lost."""
        router = self.routers[name]
        router.alive = False
        router.instance = VrrpInstance(router.settings)
        router.vips.clear()
        return self.start(name)

    def set_priority(self, name: str, priority: int) -> list[Effect]:
        """Change the configured priority (also used by a later restart)."""
        router = self.routers[name]
        router.settings = dataclasses.replace(router.settings, priority=priority)
        if not router.alive:
            return []
        return self.deliver(name, PriorityChanged(priority=priority))

    def set_track(
        self, name: str, track: str, up: bool, kind: TrackKind | str | None = None
    ) -> list[Effect]:
        return self.deliver(
            name, TrackChanged(name=track, up=up, kind=None if kind is None else TrackKind(kind))
        )

    def partition(self, *groups: list[str] | tuple[str, ...] | set[str]) -> None:
        """Split the segment: routers in the same group hear each other; routers not named
        in any group form one more group together."""
        self._groups = {}
        for index, group in enumerate(groups):
            for name in group:
                self._groups[name] = index
        self._queue.clear()

    def heal(self) -> None:
        self._groups = None

    def reachable(self, a: str, b: str) -> bool:
        if self._groups is None:
            return True
        return self._groups.get(a, -1) == self._groups.get(b, -1)

    # ---- driving ------------------------------------------------------------------------

    def deliver(self, name: str, event: Event) -> list[Effect]:
        """Hand one event to a live router now, then carry out the resulting packets."""
        router = self.routers[name]
        if not router.alive:
            raise ValueError(f"router {name} is not running")
        out = router.instance.handle(event, self.clock.now)
        self._execute(router, out)
        self._pump()
        return out

    def next_deadline(self) -> float | None:
        deadlines = [r.instance.next_deadline() for r in self.routers.values() if r.alive]
        return min((d for d in deadlines if d is not None), default=None)

    def run_until(self, when: float) -> None:
        """Fire every timer due up to `when` in order, then leave the clock at `when`."""
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > when:
                break
            self.clock.advance_to(max(deadline, self.clock.now))
            for router in list(self.routers.values()):
                due = router.instance.next_deadline()
                if router.alive and due is not None and due <= self.clock.now:
                    self.deliver(router.name, TimerFired())
        self.clock.advance_to(max(when, self.clock.now))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now + seconds)

    # ---- observing ----------------------------------------------------------------------

    def live(self) -> list[Router]:
        return [r for r in self.routers.values() if r.alive]

    def masters(self) -> list[str]:
        return [r.name for r in self.live() if r.state is State.MASTER]

    def states(self) -> dict[str, State]:
        return {r.name: r.state for r in self.routers.values()}

    def vip_holders(self, address: str) -> list[str]:
        wanted = str(ipaddress.ip_address(address))
        return [r.name for r in self.live() if wanted in r.vips]

    # ---- internals ----------------------------------------------------------------------

    def _execute(self, router: Router, effects: list[Effect]) -> None:
        self.recorder.record(self.clock.now, router.name, effects)
        for effect in effects:
            if isinstance(effect, SendAdvert):
                self._queue.append((router, effect))
            elif isinstance(effect, AddVips):
                router.vips |= {str(ipaddress.ip_address(a.address)) for a in effect.addresses}
            elif isinstance(effect, DelVips):
                router.vips -= {str(ipaddress.ip_address(a.address)) for a in effect.addresses}

    def _pump(self) -> None:
        deliveries = 0
        while self._queue:
            sender, advert = self._queue.popleft()
            multicast = ipaddress.ip_address(advert.destination).is_multicast
            for target in list(self.routers.values()):
                if target is sender or not target.alive:
                    continue
                if not self.reachable(sender.name, target.name):
                    continue
                if not multicast and target.address != str(
                    ipaddress.ip_address(advert.destination)
                ):
                    continue
                deliveries += 1
                if deliveries > self.delivery_limit:
                    raise RuntimeError("packet storm: too many deliveries in one instant")
                packet = PacketReceived(
                    source=advert.source,
                    destination=advert.destination,
                    ttl=255,
                    payload=advert.payload,
                )
                out = target.instance.handle(packet, self.clock.now)
                self._execute(target, out)
