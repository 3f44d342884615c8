"""A takeover's first effects without waiting: when the adapters offer `add_now` and
`announce_now`, the VIPs, the advert and the gratuitous ARP go out inside the call that fed the
machine, in the core's order, and whatever needs waiting (or follows it) goes to the worker."""

from __future__ import annotations

from dataclasses import dataclass

from vipkeeper.core.effects import AddVips, SendGratuitous
from vipkeeper.core.events import Started
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.drivers.vrrp import Driver
from vipkeeper.testing import adapters
from vipkeeper.testing.adapters import VIP, Recorder, ScriptedMachine, make_driver

VIP2 = VirtualAddress(address="192.0.2.11", prefixlen=32, dev="eth0")
TAKEOVER = [
    adapters.TO_MASTER,
    AddVips(addresses=(VIP, VIP2)),
    adapters.ADVERT,
    SendGratuitous(addresses=(VIP, VIP2), count=3),
    adapters.NOTIFY_MASTER,
]


@dataclass
class ImmediateRecorder(Recorder):
    """`Recorder` plus the adapters' no-wait methods, scripted."""

    add_now_answer: bool | None = True
    add_now_raises: bool = False
    announce_now_answer: bool = True

    def add_now(self, address: VirtualAddress) -> bool | None:
        if self.add_now_raises:
            raise OSError("netlink said no")
        if self.add_now_answer is not None:
            self.log.append(f"add now {address.address}")
        return self.add_now_answer

    def announce_now(self, addresses: tuple[VirtualAddress, ...], count: int) -> bool:
        if self.announce_now_answer:
            self.log.append(f"garp now {count}")
        return self.announce_now_answer


def make(recorder: Recorder) -> tuple[Driver, ScriptedMachine]:
    machine = ScriptedMachine(replies={Started: list(TAKEOVER)})
    return make_driver({"vi1": machine}, recorder), machine


async def test_addresses_advert_and_arp_go_out_inside_the_feed_call() -> None:
    recorder = ImmediateRecorder()
    driver, _ = make(recorder)
    driver.feed("vi1", Started())
    # Nothing has been awaited yet: only what ran synchronously is recorded.
    assert recorder.log == [
        "add now 192.0.2.10",
        "add now 192.0.2.11",
        "send 224.0.0.18",
        "garp now 3",
    ]
    await driver.drain()
    await driver.stop()
    assert recorder.log[4:] == ["notify MASTER"]
    assert [t.new for t in driver.transitions] == ["MASTER"]


async def test_an_add_that_must_wait_sends_it_and_all_after_it_to_the_worker() -> None:
    recorder = ImmediateRecorder(add_now_answer=None)
    driver, _ = make(recorder)
    driver.feed("vi1", Started())
    assert recorder.log == []  # the advert must not overtake the addresses
    await driver.drain()
    await driver.stop()
    assert recorder.log == [
        "add 192.0.2.10",
        "add 192.0.2.11",
        "send 224.0.0.18",
        "garp 3",
        "notify MASTER",
    ]


async def test_a_failing_add_is_counted_and_the_takeover_goes_on() -> None:
    recorder = ImmediateRecorder(add_now_raises=True)
    driver, _ = make(recorder)
    driver.feed("vi1", Started())
    assert recorder.log == ["send 224.0.0.18", "garp now 3"]
    assert driver.stats.effect_errors["AddVips"] == 1
    await driver.drain()
    await driver.stop()


async def test_spaced_announcements_go_to_the_worker_after_the_advert() -> None:
    recorder = ImmediateRecorder(announce_now_answer=False)
    driver, _ = make(recorder)
    driver.feed("vi1", Started())
    assert recorder.log == ["add now 192.0.2.10", "add now 192.0.2.11", "send 224.0.0.18"]
    await driver.drain()
    await driver.stop()
    assert recorder.log[3:] == ["garp 3", "notify MASTER"]
