"""Steady states: what an instance does, over and over, while nothing happens.

A Master with nothing else due sends the same advertisement every Advertisement_Interval; a
Backup that accepted its Master's advertisement waits for the same bytes again and restarts its
Master_Down_Timer each time they arrive. `VrrpInstance.steady()` describes that repetition as
plain data, so an adapter can carry it out without waking the event loop (see
`vipkeeper.io.autopilot`). The instance decides nothing differently: it is handed a
`SteadyReport` before any other event and continues exactly as if it had seen every repeat.
"""

from __future__ import annotations

from typing import NamedTuple

from vipkeeper.core.effects import SendAdvert
from vipkeeper.core.records import record


class Echo(NamedTuple):
    """What makes a received advertisement a repeat of the accepted one: the same VRRP bytes
    from the same sender to the same destination with the same TTL / hop limit."""

    payload: bytes
    source: str
    destination: str
    ttl: int


@record
class Beacon:
    """A Master whose only timer is the Adver_Timer.

    Send every message of `sends` at `next_at`, then one `interval` after each previous due time
    (RFC 9568 §6.4.3), keeping the cadence: after falling a whole interval behind, the next is
    due one interval after the late send.
    """

    sends: tuple[SendAdvert, ...]
    interval: float
    next_at: float


@record
class Watch:
    """A Backup whose Master repeats one advertisement.

    Each arrival of a packet equal to `echo` (payload, IP source, IP destination, TTL / hop
    limit) moves `deadline` to its arrival time plus `master_down_interval`. Anything else, and
    the deadline passing, needs the instance itself. `interface` and `family` (4 or 6) name the
    socket the advertisements come in on.
    """

    interface: str
    family: int
    echo: Echo
    master_down_interval: float
    deadline: float


Steady = Beacon | Watch


def next_advert_due(due: float, now: float, interval: float) -> float:
    """When a Master's next advertisement is due, the one cadence for the core and the autopilot.

    RFC 9568 §6.4.3 resets the Adver_Timer on every send. The next advert is due one interval
    after this one was due, not after it was handled (a late wake-up would otherwise slow every
    Master down); only after falling a whole interval behind does it restart from `now`.
    """
    following = due + interval
    return following if following > now else now + interval
