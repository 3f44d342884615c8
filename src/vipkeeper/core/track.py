"""Tracked objects (track_interface, track_script): rise/fall counting and priority arithmetic.

Owns: turning a stream of vrrp_script results into up/down changes (`ScriptTracker`, keepalived's
`rise` / `fall` / `init_fail`), and turning the up/down state of weighted tracked objects into
a priority offset or a fault (`TrackSet`), with keepalived's weight semantics:
  weight 0        -> the instance goes to FAULT while the object is down;
  weight > 0      -> the priority is raised by `weight` while the object is up;
  weight < 0      -> the priority is lowered by `-weight` while the object is down.
Must never: run scripts, read interfaces or clocks. The driver feeds results in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vipkeeper.core.states import TrackKind

MIN_WEIGHT = -253  # keepalived's accepted range for track_interface / track_script weights
MAX_WEIGHT = 253


class ScriptTracker:
    """Counts consecutive results of one vrrp_script and reports when its state flips.

    A script that is up goes down after `fall` consecutive failures; one that is down comes up
    after `rise` consecutive successes. A result agreeing with the current state resets the
    count. `initially_up=False` is keepalived's `init_fail`.
    """

    def __init__(self, *, rise: int = 1, fall: int = 1, initially_up: bool = True) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.up = initially_up
        self._streak = 0  # consecutive results contradicting `up`

    def record(self, success: bool) -> bool | None:
        """Feed one result; return the new state if it changed, else None."""
        if success == self.up:
            self._streak = 0
            return None
        self._streak += 1
        needed = self.rise if success else self.fall
        if self._streak < needed:
            return None
        self.up = success
        self._streak = 0
        return self.up


def priority_delta(weight: int, up: bool) -> int:
    """The priority offset one weighted tracked object contributes (0 for weight 0)."""
    if weight > 0 and up:
        return weight
    if weight < 0 and not up:
        return weight
    return 0


@dataclass
class TrackSet:
    """The tracked objects of one instance: their weights and current up/down state.

    Objects start up; the driver reports otherwise with TrackChanged (before Started if the
    initial state is known to be down, e.g. a script with init_fail).
    """

    interfaces: dict[str, int] = field(default_factory=dict)  # name -> weight
    scripts: dict[str, int] = field(default_factory=dict)  # name -> weight
    down: set[tuple[TrackKind, str]] = field(default_factory=set)

    def update(self, name: str, up: bool, kind: TrackKind | None = None) -> bool:
        """Record a change; `kind` None applies to every tracked object of that name.

        Returns True if the name is tracked here (whatever the change did).
        """
        known = False
        for candidate, table in (
            (TrackKind.INTERFACE, self.interfaces),
            (TrackKind.SCRIPT, self.scripts),
        ):
            if kind not in (None, candidate) or name not in table:
                continue
            known = True
            if up:
                self.down.discard((candidate, name))
            else:
                self.down.add((candidate, name))
        return known

    def _items(self) -> list[tuple[TrackKind, str, int]]:
        return [(TrackKind.INTERFACE, n, w) for n, w in self.interfaces.items()] + [
            (TrackKind.SCRIPT, n, w) for n, w in self.scripts.items()
        ]

    def faults(self) -> list[str]:
        """Human descriptions of the unweighted objects that are down (empty: no fault)."""
        return [
            f"{kind.value} {name} down"
            for kind, name, weight in self._items()
            if weight == 0 and (kind, name) in self.down
        ]

    def delta(self) -> int:
        """The summed priority offset of the weighted objects."""
        return sum(
            priority_delta(weight, (kind, name) not in self.down)
            for kind, name, weight in self._items()
        )
