"""vrrp_sync_group: several VRRP instances that fail over together.

Owns: routing events to member instances and the follow rules between them:
- a member whose own tracked objects fail (FAULT) holds every other member in FAULT until no
  member has a fault of its own left;
- a member going Backup -> Master by itself brings the other Backup members to Master;
- a member going Master -> Backup by itself brings the other Master members to Backup;
- the group as a whole entering MASTER / BACKUP / FAULT is reported as RunNotify(kind=GROUP).
The coordinator talks to members only through `SyncGroupRequested` events, so each member's
transition table stays the single place where states change.
Must never: do I/O or read a clock (same shape as `VrrpInstance`: handle / next_deadline).
"""

from __future__ import annotations

from collections.abc import Sequence

from vipkeeper.core.effects import Effect, RunNotify
from vipkeeper.core.events import Event, SyncGroupRequested, TimerFired
from vipkeeper.core.states import GroupRequest, NotifyState, NotifyTarget, State
from vipkeeper.core.vrrp import VrrpInstance


class SyncGroup:
    """Coordinates the member instances of one vrrp_sync_group."""

    def __init__(self, name: str, instances: Sequence[VrrpInstance]) -> None:
        if not instances:
            raise ValueError(f"sync group {name} has no members")
        self.name = name
        self.instances: dict[str, VrrpInstance] = {i.name: i for i in instances}
        if len(self.instances) != len(instances):
            raise ValueError(f"sync group {name} lists an instance twice")
        self.state: State | None = None  # the last state reported for the whole group

    def next_deadline(self) -> float | None:
        deadlines = [i.next_deadline() for i in self.instances.values()]
        return min((d for d in deadlines if d is not None), default=None)

    def handle(self, event: Event, now: float, *, instance: str | None = None) -> list[Effect]:
        """Deliver `event` to member `instance`, or to every member when `instance` is None.

        A broadcast TimerFired reaches only the members whose deadline has passed.
        """
        if instance is not None:
            if instance not in self.instances:
                raise KeyError(f"{instance} is not a member of sync group {self.name}")
            targets = [self.instances[instance]]
        elif isinstance(event, TimerFired):
            targets = [
                i
                for i in self.instances.values()
                if (d := i.next_deadline()) is not None and d <= now
            ]
        else:
            targets = list(self.instances.values())
        states_before = {i.name: i.state for i in self.instances.values()}
        own_fault_before = {i.name: self._own_fault(i) for i in self.instances.values()}
        effects: list[Effect] = []
        for member in targets:
            effects += member.handle(event, now)
        effects += self._follow_faults(own_fault_before, now)
        effects += self._follow_states(targets, states_before, now)
        effects += self._group_notify()
        return effects

    @staticmethod
    def _own_fault(member: VrrpInstance) -> bool:
        reasons = member.fault_reasons()
        if member.group_fault is not None:
            reasons.remove(member.group_fault)
        return bool(reasons) and member.state is not State.INITIALIZE

    def _request(
        self, member: VrrpInstance, state: GroupRequest, reason: str, now: float
    ) -> list[Effect]:
        return member.handle(SyncGroupRequested(group=self.name, state=state, reason=reason), now)

    def _follow_faults(self, own_fault_before: dict[str, bool], now: float) -> list[Effect]:
        effects: list[Effect] = []
        for name, member in self.instances.items():
            if not own_fault_before[name] and self._own_fault(member):
                for other in self.instances.values():
                    if other is not member:
                        effects += self._request(
                            other, GroupRequest.FAULT, f"{name} entered FAULT", now
                        )
        cleared = [
            n for n, m in self.instances.items() if own_fault_before[n] and not self._own_fault(m)
        ]
        if cleared and not any(self._own_fault(m) for m in self.instances.values()):
            for member in self.instances.values():
                if member.group_fault is not None:
                    effects += self._request(
                        member, GroupRequest.FAULT_CLEARED, f"{cleared[0]} recovered", now
                    )
        return effects

    def _follow_states(
        self, targets: list[VrrpInstance], states_before: dict[str, State], now: float
    ) -> list[Effect]:
        effects: list[Effect] = []
        for member in targets:
            old, new = states_before[member.name], member.state
            if new is State.MASTER and old is not State.MASTER:
                wanted, from_state = GroupRequest.MASTER, State.BACKUP
            elif new is State.BACKUP and old is State.MASTER:
                wanted, from_state = GroupRequest.BACKUP, State.MASTER
            else:
                continue
            for other in self.instances.values():
                if other is not member and other.state is from_state:
                    reason = f"{member.name} became {wanted}"
                    effects += self._request(other, wanted, reason, now)
        return effects

    def _group_notify(self) -> list[Effect]:
        states = {i.state for i in self.instances.values()}
        if State.FAULT in states:
            new = State.FAULT
        elif len(states) == 1 and states <= {State.MASTER, State.BACKUP}:
            new = next(iter(states))
        else:
            return []
        if new is self.state:
            return []
        self.state = new
        return [
            RunNotify(
                instance=self.name,
                state=NotifyState(new.value),
                priority=0,
                kind=NotifyTarget.GROUP,
            )
        ]
