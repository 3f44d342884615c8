"""The driver carries out core orders in order, fires timers for the right machine, and survives
failing effects. Machines here are scripted fakes; the real core is tested on its own."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from vipkeeper.core.effects import AddVips, DelVips, Effect, RunNotify, SendGratuitous
from vipkeeper.core.events import Event, PacketReceived, Started, TimerFired
from vipkeeper.drivers.vrrp import Driver
from vipkeeper.testing.adapters import (
    ADVERT,
    NOTIFY_MASTER,
    TO_MASTER,
    VIP,
    Recorder,
    ScriptedMachine,
    make_driver,
)


async def test_effects_are_carried_out_in_the_order_the_core_returned_them() -> None:
    machine = ScriptedMachine(
        replies={
            Started: [
                AddVips(addresses=(VIP,)),
                ADVERT,
                SendGratuitous(addresses=(VIP,), count=5),
                TO_MASTER,
                NOTIFY_MASTER,
                DelVips(addresses=(VIP,)),
            ]
        }
    )
    recorder = Recorder()
    driver = make_driver({"vi1": machine}, recorder)
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
    assert list(driver.transitions) == [TO_MASTER]


async def test_an_advert_with_nothing_queued_ahead_is_sent_at_once() -> None:
    recorder = Recorder()
    driver = make_driver({"vi1": ScriptedMachine(replies={Started: [ADVERT]})}, recorder)
    driver.feed("vi1", Started())  # no effect worker exists yet
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
    for payload in (bytes([0x21, 51, 100]), bytes([0x21, 52, 100]), b""):
        packet = PacketReceived(
            source="192.0.2.2", destination="224.0.0.18", ttl=255, payload=payload
        )
        driver.receive("eth0", socket.AF_INET, packet, None)
    assert [type(e) for e in machine.seen] == [PacketReceived]
    assert driver.stats.packets_unclaimed == 2


async def test_a_failing_effect_is_counted_and_later_effects_still_run() -> None:
    recorder = Recorder(fail_add=True)
    machine = ScriptedMachine(
        replies={Started: [AddVips(addresses=(VIP,)), SendGratuitous(addresses=(VIP,), count=1)]}
    )
    driver = make_driver({"vi1": machine}, recorder)
    driver.feed("vi1", Started())
    await driver.drain()
    await driver.stop()
    assert recorder.log == ["garp 1"]
    assert driver.stats.effect_errors["AddVips"] == 1


async def test_one_machines_slow_effects_never_hold_back_another_machines_adverts() -> None:
    release = asyncio.Event()
    recorder = Recorder()

    async def slow_notify(order: RunNotify) -> None:
        await release.wait()  # a notify script that takes its time
        recorder.log.append(f"notify {order.state}")

    slow = ScriptedMachine(replies={Started: [NOTIFY_MASTER, ADVERT]})
    quick = ScriptedMachine(replies={Started: [ADVERT]})
    driver = Driver(
        machines={"slow": slow, "quick": quick},
        sender=recorder,
        addresses=recorder,
        gratuitous=recorder,
        notify=slow_notify,
        route_packet=lambda interface, family, vrid: None,
    )
    driver.feed("slow", Started())
    driver.feed("quick", Started())
    assert recorder.log == ["send 224.0.0.18"]  # quick's advert; slow's waits for its notify
    release.set()
    await driver.drain()
    assert recorder.log == ["send 224.0.0.18", "notify MASTER", "send 224.0.0.18"]
    await driver.stop()


@dataclass
class TimedMachine(ScriptedMachine):
    """Records the time of every event; a packet restarts a 1-second timer from its time."""

    times: list[float] = field(default_factory=list)

    def handle(self, event: Event, now: float) -> list[Effect]:
        self.times.append(now)
        if isinstance(event, PacketReceived):
            self.deadline = now + 1.0
        return super().handle(event, now)


async def test_packets_read_before_the_timers_restart_them_from_their_arrival_time() -> None:
    loop = asyncio.get_running_loop()
    machine = TimedMachine()
    recorder = Recorder()
    packet = PacketReceived(
        source="192.0.2.2", destination="224.0.0.18", ttl=255, payload=b"\x31\x33"
    )
    late_packets: list[float] = []
    drained = asyncio.Event()

    def before_timers() -> None:
        for arrived in late_packets:  # what a lazily read socket hands over
            driver.receive("eth0", socket.AF_INET, packet, arrived)
        late_packets.clear()
        drained.set()

    driver = Driver(
        machines={"vi1": machine},
        sender=recorder,
        addresses=recorder,
        gratuitous=recorder,
        notify=recorder.notify,
        route_packet=lambda interface, family, vrid: ("vi1", None),
        before_timers=before_timers,
    )
    start = loop.time()
    machine.deadline = start + 0.05
    driver.feed("vi1", Started(), now=start)
    late_packets.append(start + 0.02)  # arrived before the deadline, unread until it is due
    fired = asyncio.Event()
    machine.replies[TimerFired] = []
    original = machine.handle

    def handle(event: Event, now: float) -> list[Effect]:
        if isinstance(event, TimerFired):
            fired.set()
        return original(event, now)

    machine.handle = handle  # type: ignore[method-assign]
    await asyncio.wait_for(drained.wait(), 2)  # the wake-up at the old deadline
    assert not fired.is_set()  # the late packet moved the deadline instead
    assert machine.times[-1] == start + 0.02  # fed at its arrival time
    assert machine.deadline == start + 1.02
    await driver.stop()


async def test_time_fed_to_the_machines_never_goes_backwards() -> None:
    machine = TimedMachine()
    driver = make_driver({"vi1": machine}, Recorder())
    packet = PacketReceived(
        source="192.0.2.2", destination="224.0.0.18", ttl=255, payload=b"\x31\x33"
    )
    driver.feed("vi1", Started(), now=10.0)
    driver.receive("eth0", socket.AF_INET, packet, 9.5)  # arrived before the last event
    driver.receive("eth0", socket.AF_INET, packet, 10.5)
    assert machine.times == [10.0, 10.0, 10.5]
    await driver.stop()


async def test_a_machine_removed_with_its_timer_pending_does_not_stop_the_others() -> None:
    loop = asyncio.get_running_loop()
    gone = ScriptedMachine(deadline=loop.time() + 0.01)
    stays = ScriptedMachine(deadline=loop.time() + 0.02)
    driver = make_driver({"gone": gone, "stays": stays}, Recorder())
    driver.feed("gone", Started())
    driver.feed("stays", Started())
    del driver.machines["gone"]  # what a reload does

    async def stays_fired() -> None:
        while not any(isinstance(e, TimerFired) for e in stays.seen):
            await asyncio.sleep(0.005)

    await asyncio.wait_for(stays_fired(), 2)
    await driver.stop()
