"""The driver carries out core orders in order, fires timers for the right machine, and survives
failing effects. Machines here are scripted fakes; the real core is tested on its own."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

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
from vipkeeper.core.events import Event, PacketReceived, Started, TimerFired
from vipkeeper.driver import Driver

VIP = VirtualAddress(address="192.0.2.10", prefixlen=32, dev="eth0")


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


def make_driver(machines: dict[str, ScriptedMachine], recorder: Recorder) -> Driver:
    def route(interface: str, family: int, vrid: int) -> tuple[str, str | None] | None:
        return ("vi1", None) if vrid == 51 else None

    return Driver(
        machines=machines,
        sender=recorder,
        addresses=recorder,
        gratuitous=recorder,
        notify=recorder.notify,
        route_packet=route,
    )


async def test_effects_are_carried_out_in_the_order_the_core_returned_them() -> None:
    advert = SendAdvert(interface="eth0", source="192.0.2.1", destination="224.0.0.18", payload=b"")
    transition = ReportTransition(instance="vi1", old="BACKUP", new="MASTER", reason="test")
    machine = ScriptedMachine(
        replies={
            Started: [
                AddVips(addresses=(VIP,)),
                advert,
                SendGratuitous(addresses=(VIP,), count=5),
                transition,
                RunNotify(instance="vi1", state="MASTER", priority=100),
                DelVips(addresses=(VIP,)),
            ]
        }
    )
    recorder = Recorder()
    driver = make_driver({"vi1": machine}, recorder)
    driver.start()
    driver.feed("vi1", Started())
    await driver.drain()
    await driver.stop()
    assert recorder.log == [
        "add 192.0.2.10",
        "send 224.0.0.18",
        "garp 5",
        "notify MASTER",
        "del 192.0.2.10",
    ]
    assert driver.transitions == [transition]


async def test_an_advert_with_nothing_queued_ahead_is_sent_at_once() -> None:
    advert = SendAdvert(interface="eth0", source="192.0.2.1", destination="224.0.0.18", payload=b"")
    recorder = Recorder()
    driver = make_driver({"vi1": ScriptedMachine(replies={Started: [advert]})}, recorder)
    driver.feed("vi1", Started())  # the worker is not even running
    assert recorder.log == ["send 224.0.0.18"]


async def test_timer_fires_each_machine_at_its_own_deadline() -> None:
    loop = asyncio.get_running_loop()
    now = loop.time()
    fired: list[str] = []
    done = asyncio.Event()

    class Noting(ScriptedMachine):
        name: str = ""

        def handle(self, event: Event, now: float) -> list[Effect]:
            if isinstance(event, TimerFired):
                fired.append(self.name)
                if len(fired) == 2:
                    done.set()
            return super().handle(event, now)

    early = Noting(deadline=now + 0.02, after_timer=now + 3600)
    early.name = "early"
    late = Noting(deadline=now + 0.05)
    late.name = "late"
    recorder = Recorder()
    driver = make_driver({"late": late, "early": early}, recorder)
    driver.feed_all(Started())
    await asyncio.wait_for(done.wait(), timeout=5)
    # The early machine re-armed far in the future; the late one must still have fired.
    assert fired == ["early", "late"]
    await driver.stop()


async def test_packets_go_to_the_machine_owning_the_vrid_and_others_are_counted() -> None:
    machine = ScriptedMachine()
    driver = make_driver({"vi1": machine}, Recorder())
    common = {"interface": "eth0", "family": socket.AF_INET, "source": "192.0.2.2", "ttl": 255}
    driver.packet_received(destination="224.0.0.18", payload=bytes([0x21, 51, 100]), **common)
    driver.packet_received(destination="224.0.0.18", payload=bytes([0x21, 52, 100]), **common)
    driver.packet_received(destination="224.0.0.18", payload=b"", **common)
    assert [type(e) for e in machine.seen] == [PacketReceived]
    assert driver.stats.packets_unclaimed == 2


async def test_a_failing_effect_is_counted_and_later_effects_still_run() -> None:
    recorder = Recorder(fail_add=True)
    machine = ScriptedMachine(
        replies={Started: [AddVips(addresses=(VIP,)), SendGratuitous(addresses=(VIP,), count=1)]}
    )
    driver = make_driver({"vi1": machine}, recorder)
    driver.start()
    driver.feed("vi1", Started())
    await driver.drain()
    await driver.stop()
    assert recorder.log == ["garp 1"]
    assert driver.stats.effect_errors["AddVips"] == 1
