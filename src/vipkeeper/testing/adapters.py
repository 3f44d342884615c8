"""Fakes around the VRRP `Driver`: a scripted machine and adapters that record what they did.

`ScriptedMachine` answers each event type with a fixed list of effects and keeps a settable
deadline, so a test decides what "the core" orders; `Recorder` stands in for the sender, the
address manager, the gratuitous sender and the notifier, and logs each call as one line
("add 192.0.2.10", "send 224.0.0.18", "garp 5", "notify MASTER"). ADVERT, TO_MASTER and
NOTIFY_MASTER are orders a scripted machine gives, as instance vi1 becoming Master would.
Must never: touch the kernel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vipkeeper.core.effects import Effect, ReportTransition, RunNotify, SendAdvert
from vipkeeper.core.events import Event, TimerFired
from vipkeeper.core.states import NotifyState, State
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.drivers.vrrp import Driver

Route = Callable[[str, int, int], tuple[str, str | None] | None]

VIP = VirtualAddress(address="192.0.2.10", prefixlen=32, dev="eth0")
ADVERT = SendAdvert(interface="eth0", source="192.0.2.1", destination="224.0.0.18", payload=b"")
TO_MASTER = ReportTransition(instance="vi1", old=State.BACKUP, new=State.MASTER, reason="test")
NOTIFY_MASTER = RunNotify(instance="vi1", state=NotifyState.MASTER, priority=100)


@dataclass
class ScriptedMachine:
    """Answers each event type with a fixed list of effects and keeps a settable deadline."""

    replies: dict[type, list[Effect]] = field(default_factory=dict)
    deadline: float | None = None
    seen: list[Event] = field(default_factory=list)
    after_timer: float | None = None

    def handle(self, event: Event, now: float) -> list[Effect]:
        self.seen.append(event)
        if isinstance(event, TimerFired):
            self.deadline = self.after_timer
        return list(self.replies.get(type(event), []))

    def next_deadline(self) -> float | None:
        return self.deadline


@dataclass
class Recorder:
    """The driver's four adapters in one; `fail_add` makes every address addition fail."""

    log: list[str] = field(default_factory=list)
    fail_add: bool = False

    def send(self, *, interface: str, source: str, destination: str, payload: bytes) -> None:
        self.log.append(f"send {destination}")

    async def add(self, address: VirtualAddress) -> None:
        await asyncio.sleep(0)  # a real netlink call yields to the loop
        if self.fail_add:
            raise OSError("netlink said no")
        self.log.append(f"add {address.address}")

    async def delete(self, address: VirtualAddress) -> None:
        self.log.append(f"del {address.address}")

    async def announce(self, addresses: tuple[VirtualAddress, ...], count: int) -> None:
        self.log.append(f"garp {count}")

    async def notify(self, order: RunNotify) -> None:
        self.log.append(f"notify {order.state}")


def make_driver(
    machines: Mapping[str, Any],
    recorder: Recorder,
    *,
    route: Route | None = None,
    pilot: Any = None,
) -> Driver:
    """A Driver over `machines` whose adapters are `recorder`; packets go where `route` says
    (by default VRID 51 to "vi1")."""

    def vrid_51(interface: str, family: int, vrid: int) -> tuple[str, str | None] | None:
        return ("vi1", None) if vrid == 51 else None

    return Driver(
        machines=machines,
        sender=recorder,
        addresses=recorder,
        gratuitous=recorder,
        notify=recorder.notify,
        route_packet=route or vrid_51,
        pilot=pilot,
    )
