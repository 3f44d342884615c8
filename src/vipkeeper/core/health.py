"""Real-server health for the LVS side: which real servers are up, with what weight, in which pool.

Owns: the per-checker retry state machine, the up/down state of each real server, misc_dynamic
weights, and each virtual server's quorum, sorry-server switching and desired pool.
Must never: open a socket, run a script, read a clock or draw a random number. The caller runs the
checks (`RunCheck`), reports their results as facts with `now`, and carries out the orders.
The records it is given and answers with are defined in `health_records`; the pools it answers
with are `core.pool`'s, which the load balancer serves as they are.

Semantics follow keepalived.conf(5), "LVS CONFIGURATION":
- `retry` counts *additional* checks made after a live server's check fails, spaced by
  `delay_before_retry`; the checker goes down only when the first failure and all `retry` retries
  failed (retry + 1 consecutive failures). A down checker is checked every `delay_loop` and comes
  back after one success.
- `alpha`: checkers start down (so the real server starts out of the pool); otherwise up.
- A real server is up when every one of its checkers is up; one with no checker is always up.
- MISC_CHECK: exit 0 is success, anything else failure; with `misc_dynamic`, 1 is failure, 0
  success with the weight unchanged, and 2-255 success with the real server's weight moved by
  (exit status - 2 - configured weight), i.e. set to exit status - 2 when it is the only dynamic
  checker.
- `inhibit_on_failure`: a down server stays in the pool with weight 0 instead of leaving it.
- `quorum` is the minimum sum of weights of live servers; `hysteresis` dampens flapping: quorum is
  lost below quorum - hysteresis (or when no live weight is left) and regained at quorum +
  hysteresis. While quorum is lost and a `sorry_server` is configured, the real servers leave the
  pool (weight 0 with inhibit_on_failure) and the sorry server replaces them.
- `omega`: at shutdown, run the notify_down scripts of live servers and quorum_down if quorum
  was held.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable
from enum import Enum

from vipkeeper.core.health_records import (
    CheckerId,
    CheckerSpec,
    CheckFailed,
    CheckSucceeded,
    Endpoint,
    HealthEffect,
    HealthEvent,
    MiscResult,
    NotifyKind,
    PoolChanged,
    QuorumGained,
    QuorumLost,
    RealServerSpec,
    RunCheck,
    RunNotifyScript,
    ServerDown,
    ServerUp,
    VirtualServerSpec,
    WeightChanged,
)
from vipkeeper.core.pool import Pool, RealServer

# The records are defined in health_records and pool; they are this module's vocabulary too.
__all__ = [
    "CheckFailed",
    "CheckSucceeded",
    "CheckerId",
    "CheckerSpec",
    "CheckerState",
    "Endpoint",
    "HealthEffect",
    "HealthEvent",
    "HealthMonitor",
    "HealthProtocolError",
    "MiscResult",
    "NotifyKind",
    "Outcome",
    "Pool",
    "PoolChanged",
    "QuorumGained",
    "QuorumLost",
    "RealServer",
    "RealServerSpec",
    "RunCheck",
    "RunNotifyScript",
    "ServerDown",
    "ServerUp",
    "VirtualServerSpec",
    "WeightChanged",
    "misc_outcome",
]


class HealthProtocolError(Exception):
    """An input the state machine has no transition for (unknown checker, result not awaited)."""


# ---------------------------------------------------------------------------------------------
# The per-checker state machine: one table.


class CheckerState(Enum):
    UP = "up"
    RETRYING = "retrying"  # still up: a check failed and retries remain
    DOWN = "down"


class Outcome(Enum):
    PASSED = "passed"
    FAILED = "failed"


class _Checker:
    __slots__ = ("carried_due", "deadline", "failures", "generation", "id", "in_flight", "spec",
                 "state", "weight_delta")  # fmt: skip

    def __init__(self, checker_id: CheckerId, spec: CheckerSpec) -> None:
        self.id = checker_id
        self.spec = spec
        self.state = CheckerState.DOWN if spec.alpha else CheckerState.UP
        self.failures = 0  # consecutive failed checks
        self.in_flight = False
        self.deadline: float | None = None
        self.generation = 0  # invalidates stale heap entries
        self.weight_delta = 0  # misc_dynamic: exit status - 2 - configured weight
        self.carried_due: float | None = None  # the first check's time, carried over a reload


# Each handler updates the checker and returns (next state, delay until the next check).


def _passed(checker: _Checker) -> tuple[CheckerState, float]:
    checker.failures = 0
    return CheckerState.UP, checker.spec.delay_loop


def _failed_while_up(checker: _Checker) -> tuple[CheckerState, float]:
    checker.failures += 1
    # keepalived.conf(5) retry: "additional checks if check of an alive server fails".
    if checker.failures <= checker.spec.retry:
        return CheckerState.RETRYING, checker.spec.delay_before_retry
    return CheckerState.DOWN, checker.spec.delay_loop


def _failed_while_down(checker: _Checker) -> tuple[CheckerState, float]:
    checker.failures += 1
    return CheckerState.DOWN, checker.spec.delay_loop


_TRANSITIONS: dict[
    tuple[CheckerState, Outcome], Callable[[_Checker], tuple[CheckerState, float]]
] = {
    (CheckerState.UP, Outcome.PASSED): _passed,
    (CheckerState.UP, Outcome.FAILED): _failed_while_up,
    (CheckerState.RETRYING, Outcome.PASSED): _passed,
    (CheckerState.RETRYING, Outcome.FAILED): _failed_while_up,
    (CheckerState.DOWN, Outcome.PASSED): _passed,
    (CheckerState.DOWN, Outcome.FAILED): _failed_while_down,
}


class _RealServer:
    __slots__ = ("checkers", "spec", "up")

    def __init__(self, spec: RealServerSpec, checkers: list[_Checker]) -> None:
        self.spec = spec
        self.checkers = checkers
        self.up = self._all_checkers_up()

    def _all_checkers_up(self) -> bool:
        return all(c.state is not CheckerState.DOWN for c in self.checkers)

    def refresh(self) -> bool:
        """Recompute `up`; return whether it changed."""
        up = self._all_checkers_up()
        changed = up != self.up
        self.up = up
        return changed

    @property
    def weight(self) -> int:
        return max(0, self.spec.weight + sum(c.weight_delta for c in self.checkers))


class _VirtualServer:
    __slots__ = ("pool", "quorum_up", "servers", "spec")

    def __init__(self, spec: VirtualServerSpec, servers: dict[Endpoint, _RealServer]) -> None:
        self.spec = spec
        self.servers = servers
        live = self.live_weight()
        # At start there is no transition yet: quorum is simply held or not, no script runs.
        self.quorum_up = live > 0 and live >= spec.quorum
        self.pool = self.compute_pool()

    def live_weight(self) -> int:
        return sum(rs.weight for rs in self.servers.values() if rs.up)

    def compute_pool(self) -> Pool:
        spec = self.spec
        servers = [rs for rs in self.servers.values() if rs.up or rs.spec.inhibit_on_failure]
        members = tuple(RealServer.at(rs.spec.server, rs.weight if rs.up else 0) for rs in servers)
        sorry = spec.sorry_server
        pool = Pool(
            real_servers=members,
            sorry_server=None if sorry is None else RealServer.at(sorry, spec.sorry_server_weight),
            in_quorum=self.quorum_up,
        )
        if pool.sorry_active:
            # The sorry server replaces the real servers: they leave the pool, the ones with
            # inhibit_on_failure stay in it at weight 0.
            held = (
                RealServer.at(rs.spec.server, 0) for rs in servers if rs.spec.inhibit_on_failure
            )
            return dataclasses.replace(pool, real_servers=tuple(held))
        if sorry is not None and spec.sorry_server_inhibit:  # idle, kept in the pool at weight 0
            return dataclasses.replace(pool, sorry_server=RealServer.at(sorry, 0))
        return dataclasses.replace(pool, sorry_server=None)  # idle: not in the pool


def _run_script(
    script: str | None, kind: NotifyKind, virtual_server: str, server: Endpoint | None
) -> list[HealthEffect]:
    """The order to run a configured notify/quorum script; none when it is not configured."""
    if not script:
        return []
    return [RunNotifyScript(script=script, kind=kind, virtual_server=virtual_server, server=server)]


def _settings_of(spec: RealServerSpec) -> RealServerSpec:
    """A real server's settings with the warm-up draw left out (it differs on every load)."""
    return dataclasses.replace(
        spec,
        checkers=tuple(dataclasses.replace(c, initial_delay=0.0) for c in spec.checkers),
    )


def misc_outcome(exit_code: int | None, *, dynamic: bool) -> tuple[Outcome, int | None]:
    """Map a MISC_CHECK exit status to (outcome, new dynamic weight or None: unchanged).

    keepalived.conf(5) MISC_CHECK / misc_dynamic.
    """
    if exit_code == 0:
        return Outcome.PASSED, None
    if dynamic and exit_code is not None and 2 <= exit_code <= 255:
        return Outcome.PASSED, exit_code - 2
    return Outcome.FAILED, None


class HealthMonitor:
    """Health state of every real server of a set of virtual servers.

    Drive it like a sans-I/O protocol: `start(now)`, then run the `RunCheck` orders returned by
    `handle_timer(now)` whenever `next_deadline()` has passed, and feed each result back with
    `handle(event, now)`. A checker has at most one check in flight; its next check is scheduled
    from the moment its result is handled.
    """

    def __init__(self, virtual_servers: Iterable[VirtualServerSpec]) -> None:
        self._virtual_servers: dict[str, _VirtualServer] = {}
        self._checkers: dict[CheckerId, _Checker] = {}
        self._heap: list[tuple[float, int, int, CheckerId]] = []
        self._sequence = 0
        self._started = False
        self._stopped = False
        for vs_spec in virtual_servers:
            if vs_spec.name in self._virtual_servers:
                raise ValueError(f"duplicate virtual server {vs_spec.name!r}")
            servers: dict[Endpoint, _RealServer] = {}
            for rs_spec in vs_spec.real_servers:
                if rs_spec.server in servers:
                    raise ValueError(f"{vs_spec.name}: duplicate real server {rs_spec.server}")
                checkers = []
                for index, checker_spec in enumerate(rs_spec.checkers):
                    checker_id = CheckerId(
                        virtual_server=vs_spec.name, server=rs_spec.server, index=index
                    )
                    checker = _Checker(checker_id, checker_spec)
                    self._checkers[checker_id] = checker
                    checkers.append(checker)
                servers[rs_spec.server] = _RealServer(rs_spec, checkers)
            self._virtual_servers[vs_spec.name] = _VirtualServer(vs_spec, servers)

    # -- queries ------------------------------------------------------------------------------

    @property
    def checker_ids(self) -> tuple[CheckerId, ...]:
        return tuple(self._checkers)

    def desired_pool(self, virtual_server: str) -> Pool:
        return self._vs(virtual_server).pool

    def has_server(self, virtual_server: str, server: Endpoint) -> bool:
        vs = self._virtual_servers.get(virtual_server)
        return vs is not None and server in vs.servers

    def server_is_up(self, virtual_server: str, server: Endpoint) -> bool:
        return self._rs(virtual_server, server).up

    def server_weight(self, virtual_server: str, server: Endpoint) -> int:
        return self._rs(virtual_server, server).weight

    def quorum_is_up(self, virtual_server: str) -> bool:
        return self._vs(virtual_server).quorum_up

    def checker_state(self, checker: CheckerId) -> CheckerState:
        return self._checker(checker).state

    def next_deadline(self) -> float | None:
        """When `handle_timer` next has a check to start; None: nothing scheduled."""
        heap = self._heap
        while heap:
            _, _, generation, checker_id = heap[0]
            checker = self._checkers[checker_id]
            if checker.generation == generation and not checker.in_flight:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def carry_over(
        self,
        previous: HealthMonitor,
        now: float,
        *,
        unchanged: Callable[[str, Endpoint], bool] = lambda _vs, _server: True,
    ) -> list[tuple[str, Endpoint]]:
        """Before `start`, on a reload: take the health of every real server whose settings are
        unchanged in `previous` (its checkers' states, failure counts, dynamic weights and next
        check time; a check that was running is made again at once), and the quorum state of
        every virtual server whose quorum settings are unchanged. `unchanged(virtual server,
        server)` lets the caller rule out servers whose checks changed in ways the specs here
        do not hold (a checker's address or timeout). Returns the real servers carried over,
        as (virtual server, server)."""
        if self._started:
            raise HealthProtocolError("carry_over comes before start")
        carried: list[tuple[str, Endpoint]] = []
        for name, vs in self._virtual_servers.items():
            old_vs = previous._virtual_servers.get(name)
            if old_vs is None:
                continue
            for endpoint, rs in vs.servers.items():
                old_rs = old_vs.servers.get(endpoint)
                if old_rs is None or _settings_of(old_rs.spec) != _settings_of(rs.spec):
                    continue
                if not unchanged(name, endpoint):
                    continue
                for checker, old in zip(rs.checkers, old_rs.checkers, strict=True):
                    checker.state = old.state
                    checker.failures = old.failures
                    checker.weight_delta = old.weight_delta
                    checker.carried_due = (
                        now if old.in_flight or old.deadline is None else old.deadline
                    )
                rs.up = old_rs.up
                carried.append((name, endpoint))
            same_quorum = (old_vs.spec.quorum, old_vs.spec.hysteresis) == (
                vs.spec.quorum,
                vs.spec.hysteresis,
            )
            if same_quorum:
                vs.quorum_up = old_vs.quorum_up
            else:
                live = vs.live_weight()
                vs.quorum_up = live > 0 and live >= vs.spec.quorum
            vs.pool = vs.compute_pool()
        return carried

    # -- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> list[HealthEffect]:
        """Schedule every checker's first check and return the initial pools."""
        if self._started:
            raise HealthProtocolError("health monitor already started")
        self._started = True
        for checker in self._checkers.values():
            due = checker.carried_due
            self._schedule(checker, now + checker.spec.initial_delay if due is None else due)
        return [
            PoolChanged(virtual_server=name, pool=vs.pool)
            for name, vs in self._virtual_servers.items()
        ]

    def handle_timer(self, now: float) -> list[HealthEffect]:
        """Start every check whose time has come."""
        effects: list[HealthEffect] = []
        if self._stopped:
            return effects
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, generation, checker_id = heapq.heappop(heap)
            checker = self._checkers[checker_id]
            if checker.generation != generation or checker.in_flight:
                continue
            checker.in_flight = True
            checker.deadline = None
            effects.append(RunCheck(checker=checker_id))
        return effects

    def handle(self, event: HealthEvent, now: float) -> list[HealthEffect]:
        """Take the result of a check started by `RunCheck`."""
        if self._stopped:
            return []  # a check that was in flight at shutdown: nothing to decide any more
        checker = self._checker(event.checker)
        if not checker.in_flight:
            raise HealthProtocolError(f"result for {event.checker} which has no check running")
        new_weight: int | None = None
        if isinstance(event, CheckSucceeded):
            outcome, reason = Outcome.PASSED, "check succeeded"
        elif isinstance(event, CheckFailed):
            outcome, reason = Outcome.FAILED, event.reason
        else:
            outcome, new_weight = misc_outcome(event.exit_code, dynamic=checker.spec.misc_dynamic)
            reason = (
                "script timed out or was killed"
                if event.exit_code is None
                else f"script exited {event.exit_code}"
            )
        checker.in_flight = False
        vs = self._virtual_servers[event.checker.virtual_server]
        rs = vs.servers[event.checker.server]
        old_weight = rs.weight

        next_state, delay = _TRANSITIONS[(checker.state, outcome)](checker)
        checker.state = next_state
        if new_weight is not None:
            checker.weight_delta = new_weight - rs.spec.weight
        self._schedule(checker, now + delay)

        effects: list[HealthEffect] = []
        scripts: list[HealthEffect] = []
        name, server = vs.spec.name, rs.spec.server
        if rs.refresh():
            if rs.up:
                effects.append(ServerUp(virtual_server=name, server=server, reason=reason))
                scripts += _run_script(rs.spec.notify_up, NotifyKind.NOTIFY_UP, name, server)
            else:
                effects.append(ServerDown(virtual_server=name, server=server, reason=reason))
                scripts += _run_script(rs.spec.notify_down, NotifyKind.NOTIFY_DOWN, name, server)
        up_changed = bool(effects)
        if rs.weight != old_weight:
            effects.append(
                WeightChanged(virtual_server=name, server=server, old=old_weight, new=rs.weight)
            )
        elif not up_changed:
            return effects  # the common case: nothing moved, so quorum and pool stand
        effects.extend(self._update_quorum(vs, scripts))
        pool = vs.compute_pool()
        if pool != vs.pool:
            vs.pool = pool
            effects.append(PoolChanged(virtual_server=name, pool=pool))
        effects.extend(scripts)
        return effects

    def shutdown(self) -> list[HealthEffect]:
        """Stop scheduling checks; with `omega`, order the notify_down / quorum_down scripts."""
        if self._stopped:
            return []
        self._stopped = True
        self._heap.clear()
        effects: list[HealthEffect] = []
        for name, vs in self._virtual_servers.items():
            if not vs.spec.omega:
                continue
            for rs in vs.servers.values():
                if rs.up:
                    effects += _run_script(
                        rs.spec.notify_down, NotifyKind.NOTIFY_DOWN, name, rs.spec.server
                    )
            if vs.quorum_up:
                effects += _run_script(vs.spec.quorum_down, NotifyKind.QUORUM_DOWN, name, None)
        return effects

    # -- internals ----------------------------------------------------------------------------

    def _update_quorum(self, vs: _VirtualServer, scripts: list[HealthEffect]) -> list[HealthEffect]:
        spec = vs.spec
        live = vs.live_weight()
        if vs.quorum_up and (live == 0 or live < spec.quorum - spec.hysteresis):
            vs.quorum_up = False
            scripts += _run_script(spec.quorum_down, NotifyKind.QUORUM_DOWN, spec.name, None)
            return [QuorumLost(virtual_server=spec.name, live_weight=live)]
        # Regaining needs some live weight too, or a quorum <= hysteresis would flap at zero.
        if not vs.quorum_up and live > 0 and live >= spec.quorum + spec.hysteresis:
            vs.quorum_up = True
            scripts += _run_script(spec.quorum_up, NotifyKind.QUORUM_UP, spec.name, None)
            return [QuorumGained(virtual_server=spec.name, live_weight=live)]
        return []

    def _schedule(self, checker: _Checker, deadline: float) -> None:
        checker.generation += 1
        checker.deadline = deadline
        self._sequence += 1
        heapq.heappush(self._heap, (deadline, self._sequence, checker.generation, checker.id))

    def _checker(self, checker_id: CheckerId) -> _Checker:
        try:
            return self._checkers[checker_id]
        except KeyError:
            raise HealthProtocolError(f"unknown checker {checker_id}") from None

    def _vs(self, name: str) -> _VirtualServer:
        try:
            return self._virtual_servers[name]
        except KeyError:
            raise KeyError(f"unknown virtual server {name!r}") from None

    def _rs(self, virtual_server: str, server: Endpoint) -> _RealServer:
        try:
            return self._vs(virtual_server).servers[server]
        except KeyError:
            raise KeyError(f"{virtual_server}: unknown real server {server}") from None
