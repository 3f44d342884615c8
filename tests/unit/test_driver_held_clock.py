"""The daemon's start feeds its instances as of when `vipkeeper.launch` put them in the election:
while the driver's clock is held, events fed without a time carry the held time; packets keep
their arrival times, and the clock runs again once released."""

from __future__ import annotations

from dataclasses import dataclass, field

from vipkeeper.core.effects import Effect
from vipkeeper.core.events import Event, Started, TrackChanged
from vipkeeper.core.states import TrackKind
from vipkeeper.testing.adapters import Recorder, make_driver


@dataclass
class ClockMachine:
    """Records the time of every event it is fed."""

    seen: list[tuple[str, float]] = field(default_factory=list)

    def handle(self, event: Event, now: float) -> list[Effect]:
        self.seen.append((type(event).__name__, now))
        return []

    def next_deadline(self) -> float | None:
        return None


async def test_events_fed_while_the_clock_is_held_carry_the_held_time() -> None:
    machine = ClockMachine()
    driver = make_driver({"vi1": machine}, Recorder())
    entered = driver._loop.time() - 0.25  # the instances entered the election 250 ms ago
    driver.hold_clock(entered)
    driver.feed("vi1", TrackChanged(name="eth1", up=False, kind=TrackKind.INTERFACE))
    driver.feed_all(Started())
    driver.hold_clock(None)
    driver.feed("vi1", TrackChanged(name="eth1", up=True, kind=TrackKind.INTERFACE))
    await driver.stop()
    assert machine.seen[:2] == [("TrackChanged", entered), ("Started", entered)]
    name, released = machine.seen[2]
    assert name == "TrackChanged" and released >= entered + 0.25


async def test_a_time_given_with_the_event_wins_over_the_held_clock() -> None:
    machine = ClockMachine()
    driver = make_driver({"vi1": machine}, Recorder())
    entered = driver._loop.time() - 0.25
    driver.hold_clock(entered)
    driver.feed("vi1", Started(), now=entered + 0.1)  # a packet's arrival time, say
    await driver.stop()
    assert machine.seen == [("Started", entered + 0.1)]
