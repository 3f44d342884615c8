"""core.health: real-server check state, pools, quorum and sorry server, with a hand-moved clock."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipkeeper.core.health import (
    _TRANSITIONS,
    CheckerId,
    CheckerSpec,
    CheckerState,
    CheckFailed,
    CheckSucceeded,
    Endpoint,
    HealthEffect,
    HealthMonitor,
    HealthProtocolError,
    MiscResult,
    NotifyKind,
    Outcome,
    Pool,
    PoolChanged,
    QuorumGained,
    QuorumLost,
    RealServer,
    RealServerSpec,
    RunCheck,
    RunNotifyScript,
    ServerDown,
    ServerUp,
    VirtualServerSpec,
    WeightChanged,
)

VS = "172.16.9.1:80"
RS1 = Endpoint(address="192.168.0.54", port=80)
RS2 = Endpoint(address="192.168.0.55", port=80)
RS3 = Endpoint(address="192.168.0.56", port=80)
SORRY = Endpoint(address="192.168.0.99", port=80)
# The pool while quorum is lost: the sorry server alone, at its weight.
SORRY_ONLY = Pool(sorry_server=RealServer.at(SORRY, 1), in_quorum=False)


def checker_of(server: Endpoint, index: int = 0) -> CheckerId:
    return CheckerId(virtual_server=VS, server=server, index=index)


def one_server(checker: CheckerSpec, **rs: object) -> HealthMonitor:
    real = RealServerSpec(server=RS1, checkers=(checker,), **rs)  # type: ignore[arg-type]
    return HealthMonitor([VirtualServerSpec(name=VS, real_servers=(real,))])


def due_checks(monitor: HealthMonitor, now: float) -> list[CheckerId]:
    return [e.checker for e in monitor.handle_timer(now) if isinstance(e, RunCheck)]


class Clock:
    """Moves a HealthMonitor through time: always to its next deadline."""

    def __init__(self, monitor: HealthMonitor, now: float = 0.0) -> None:
        self.monitor = monitor
        self.now = now
        self.effects: list[HealthEffect] = list(monitor.start(now))

    def next_check(self) -> CheckerId:
        deadline = self.monitor.next_deadline()
        assert deadline is not None
        self.now = deadline
        started = due_checks(self.monitor, self.now)
        assert len(started) == 1, started
        return started[0]

    def result(self, checker: CheckerId, passed: bool) -> list[HealthEffect]:
        event = (
            CheckSucceeded(checker=checker)
            if passed
            else CheckFailed(checker=checker, reason="connection refused")
        )
        effects = self.monitor.handle(event, self.now)
        self.effects.extend(effects)
        return effects

    def check(self, passed: bool) -> list[HealthEffect]:
        return self.result(self.next_check(), passed)


def kinds(effects: list[HealthEffect]) -> list[type]:
    return [type(e) for e in effects]


# --- retry, delay_before_retry, recovery --------------------------------------------------------


def test_server_goes_down_after_first_failure_plus_retry_retries_spaced_by_delay_before_retry():
    monitor = one_server(CheckerSpec(delay_loop=10, retry=3, delay_before_retry=2))
    clock = Clock(monitor)
    assert clock.check(passed=True) == []
    assert monitor.next_deadline() == 10

    # First failure and three retries, 2 s apart; the server stays up until the last one fails.
    failure_times = []
    for _ in range(3):
        assert clock.check(passed=False) == []
        failure_times.append(clock.now)
        assert monitor.server_is_up(VS, RS1)
        assert monitor.checker_state(checker_of(RS1)) is CheckerState.RETRYING
    assert failure_times == [10, 12, 14]
    assert monitor.next_deadline() == 16
    assert due_checks(monitor, 15.999) == []

    effects = clock.check(passed=False)
    assert clock.now == 16
    assert kinds(effects) == [ServerDown, QuorumLost, PoolChanged]
    assert effects[0] == ServerDown(virtual_server=VS, server=RS1, reason="connection refused")
    assert not monitor.server_is_up(VS, RS1)
    assert monitor.desired_pool(VS) == Pool(in_quorum=False)
    # A down server is checked at delay_loop, not delay_before_retry.
    assert monitor.next_deadline() == 26


def test_retry_zero_takes_server_down_on_first_failure():
    monitor = one_server(CheckerSpec(delay_loop=5, retry=0, delay_before_retry=1))
    clock = Clock(monitor)
    assert kinds(clock.check(passed=False))[0] is ServerDown


def test_one_success_brings_a_down_server_back_into_the_pool():
    monitor = one_server(CheckerSpec(delay_loop=5, retry=1, delay_before_retry=1), weight=7)
    clock = Clock(monitor)
    clock.check(passed=False)
    clock.check(passed=False)
    assert not monitor.server_is_up(VS, RS1)
    clock.check(passed=False)  # still down: failures of a down server are not retried
    effects = clock.check(passed=True)
    assert kinds(effects) == [ServerUp, QuorumGained, PoolChanged]
    assert monitor.desired_pool(VS) == Pool(real_servers=(RealServer.at(RS1, 7),))
    assert monitor.next_deadline() == clock.now + 5


def test_a_success_during_retries_resets_the_failure_count():
    monitor = one_server(CheckerSpec(delay_loop=5, retry=2, delay_before_retry=1))
    clock = Clock(monitor)
    clock.check(passed=False)
    clock.check(passed=False)
    clock.check(passed=True)
    assert monitor.checker_state(checker_of(RS1)) is CheckerState.UP
    clock.check(passed=False)
    clock.check(passed=False)
    assert monitor.server_is_up(VS, RS1)
    assert kinds(clock.check(passed=False))[0] is ServerDown


def test_a_checker_with_a_check_running_is_not_started_again():
    monitor = one_server(CheckerSpec(delay_loop=1))
    monitor.start(0.0)
    assert due_checks(monitor, 0.0) == [checker_of(RS1)]
    assert monitor.next_deadline() is None
    assert due_checks(monitor, 100.0) == []
    monitor.handle(CheckSucceeded(checker=checker_of(RS1)), 100.0)
    assert monitor.next_deadline() == 101.0


def test_initial_delay_postpones_the_first_check():
    monitor = one_server(CheckerSpec(delay_loop=10, initial_delay=3.5))
    monitor.start(100.0)
    assert monitor.next_deadline() == 103.5
    assert due_checks(monitor, 103.4) == []


def test_result_for_a_checker_with_no_check_running_is_a_protocol_error():
    monitor = one_server(CheckerSpec())
    monitor.start(0.0)
    with pytest.raises(HealthProtocolError, match="no check running"):
        monitor.handle(CheckSucceeded(checker=checker_of(RS1)), 0.0)
    with pytest.raises(HealthProtocolError, match="unknown checker"):
        monitor.handle(CheckSucceeded(checker=checker_of(RS2)), 0.0)


def test_transition_table_covers_every_state_and_outcome():
    assert set(_TRANSITIONS) == set(itertools.product(CheckerState, Outcome))


# --- alpha, inhibit_on_failure, multiple checkers -------------------------------------------------


def test_alpha_starts_server_down_and_out_of_the_pool_until_its_first_success():
    monitor = one_server(CheckerSpec(alpha=True, delay_loop=3))
    clock = Clock(monitor)
    assert clock.effects == [PoolChanged(virtual_server=VS, pool=Pool(in_quorum=False))]
    assert not monitor.server_is_up(VS, RS1)
    assert not monitor.quorum_is_up(VS)
    assert clock.check(passed=False) == []  # already down: nothing to report
    effects = clock.check(passed=True)
    assert kinds(effects) == [ServerUp, QuorumGained, PoolChanged]
    assert monitor.desired_pool(VS) == Pool(real_servers=(RealServer.at(RS1, 1),))


def test_without_alpha_server_starts_up_and_in_the_pool():
    monitor = one_server(CheckerSpec(), weight=3)
    assert monitor.start(0.0) == [
        PoolChanged(virtual_server=VS, pool=Pool(real_servers=(RealServer.at(RS1, 3),)))
    ]


def test_inhibit_on_failure_keeps_a_down_server_in_the_pool_with_weight_zero():
    monitor = one_server(CheckerSpec(retry=0), weight=5, inhibit_on_failure=True)
    clock = Clock(monitor)
    effects = clock.check(passed=False)
    pools = [e for e in effects if isinstance(e, PoolChanged)]
    inhibited = Pool(real_servers=(RealServer.at(RS1, 0),), in_quorum=False)
    assert pools == [PoolChanged(virtual_server=VS, pool=inhibited)]
    clock.check(passed=True)
    assert monitor.desired_pool(VS) == Pool(real_servers=(RealServer.at(RS1, 5),))


def test_a_real_server_is_up_only_while_all_its_checkers_pass():
    real = RealServerSpec(
        server=RS1,
        checkers=(CheckerSpec(retry=0, delay_loop=2), CheckerSpec(retry=0, delay_loop=3)),
    )
    monitor = HealthMonitor([VirtualServerSpec(name=VS, real_servers=(real,))])
    monitor.start(0.0)
    first, second = checker_of(RS1, 0), checker_of(RS1, 1)
    assert due_checks(monitor, 0.0) == [first, second]
    monitor.handle(CheckSucceeded(checker=first), 0.0)
    effects = monitor.handle(CheckFailed(checker=second, reason="timeout"), 0.0)
    assert kinds(effects)[0] is ServerDown
    assert due_checks(monitor, 2.0) == [first]
    assert monitor.handle(CheckSucceeded(checker=first), 2.0) == []
    assert not monitor.server_is_up(VS, RS1)
    assert due_checks(monitor, 3.0) == [second]
    effects = monitor.handle(CheckSucceeded(checker=second), 3.0)
    assert kinds(effects)[0] is ServerUp


def test_a_real_server_without_checkers_is_always_in_the_pool():
    real = RealServerSpec(server=RS1, weight=2)
    monitor = HealthMonitor([VirtualServerSpec(name=VS, real_servers=(real,))])
    monitor.start(0.0)
    assert monitor.next_deadline() is None
    assert monitor.desired_pool(VS) == Pool(real_servers=(RealServer.at(RS1, 2),))


# --- MISC_CHECK -----------------------------------------------------------------------------------


def misc(monitor: HealthMonitor, now: float, exit_code: int | None) -> list[HealthEffect]:
    assert due_checks(monitor, now) == [checker_of(RS1)]
    return monitor.handle(MiscResult(checker=checker_of(RS1), exit_code=exit_code), now)


def test_misc_dynamic_exit_status_sets_weight_to_two_less_and_zero_keeps_it():
    monitor = one_server(CheckerSpec(retry=0, delay_loop=1, misc_dynamic=True), weight=1)
    monitor.start(0.0)
    effects = misc(monitor, 0.0, 12)
    assert WeightChanged(virtual_server=VS, server=RS1, old=1, new=10) in effects
    assert monitor.desired_pool(VS) == Pool(real_servers=(RealServer.at(RS1, 10),))
    assert misc(monitor, 1.0, 0) == []
    assert monitor.server_weight(VS, RS1) == 10
    misc(monitor, 2.0, 255)
    assert monitor.server_weight(VS, RS1) == 253
    effects = misc(monitor, 3.0, 1)
    assert kinds(effects)[0] is ServerDown
    effects = misc(monitor, 4.0, 2)
    assert kinds(effects)[:2] == [ServerUp, WeightChanged]
    assert monitor.server_weight(VS, RS1) == 0
    assert monitor.desired_pool(VS) == Pool(real_servers=(RealServer.at(RS1, 0),), in_quorum=False)


@pytest.mark.parametrize("exit_code", [1, 2, 42, 255, None, -9])
def test_misc_check_without_misc_dynamic_fails_on_any_nonzero_or_missing_exit_status(exit_code):
    monitor = one_server(CheckerSpec(retry=0, misc_dynamic=False), weight=4)
    monitor.start(0.0)
    effects = misc(monitor, 0.0, exit_code)
    assert kinds(effects)[0] is ServerDown
    assert monitor.server_weight(VS, RS1) == 4


@pytest.mark.parametrize("exit_code", [None, 256, -15])
def test_misc_dynamic_treats_a_killed_or_out_of_range_script_as_failure(exit_code):
    monitor = one_server(CheckerSpec(retry=0, misc_dynamic=True))
    monitor.start(0.0)
    assert kinds(misc(monitor, 0.0, exit_code))[0] is ServerDown


# --- quorum, hysteresis, sorry server, notify scripts ---------------------------------------------


def three_server_monitor(**vs: object) -> HealthMonitor:
    servers = tuple(
        RealServerSpec(
            server=rs,
            weight=2,
            notify_up=f"/bin/up {rs.address}",
            notify_down=f"/bin/down {rs.address}",
            checkers=(CheckerSpec(retry=0, delay_loop=1),),
        )
        for rs in (RS1, RS2, RS3)
    )
    spec = VirtualServerSpec(name=VS, real_servers=servers, **vs)  # type: ignore[arg-type]
    return HealthMonitor([spec])


def set_health(monitor: HealthMonitor, now: float, health: dict[Endpoint, bool]):
    """Run one round of checks at `now` with the given results; return all effects."""
    effects: list[HealthEffect] = []
    for checker in due_checks(monitor, now):
        passed = health[checker.server]
        event = (
            CheckSucceeded(checker=checker)
            if passed
            else CheckFailed(checker=checker, reason="refused")
        )
        effects.extend(monitor.handle(event, now))
    return effects


def test_quorum_loss_switches_to_sorry_server_and_hysteresis_delays_the_way_back():
    # quorum 4 and hysteresis 1: lost below 3, regained at 5.
    monitor = three_server_monitor(
        quorum=4,
        hysteresis=1,
        sorry_server=SORRY,
        quorum_up="/bin/qup",
        quorum_down="/bin/qdown",
    )
    monitor.start(0.0)
    up = {RS1: True, RS2: True, RS3: True}
    assert set_health(monitor, 0.0, up) == []

    effects = set_health(monitor, 1.0, {**up, RS3: False})  # live 4: quorum holds
    assert not any(isinstance(e, QuorumLost) for e in effects)
    assert monitor.desired_pool(VS) == Pool(
        real_servers=(RealServer.at(RS1, 2), RealServer.at(RS2, 2))
    )

    effects = set_health(monitor, 2.0, {RS1: True, RS2: False, RS3: False})  # live 2 < 3
    assert QuorumLost(virtual_server=VS, live_weight=2) in effects
    assert monitor.desired_pool(VS) == SORRY_ONLY
    scripts = [e for e in effects if isinstance(e, RunNotifyScript)]
    assert [(s.kind, s.script) for s in scripts] == [
        (NotifyKind.NOTIFY_DOWN, "/bin/down 192.168.0.55"),
        (NotifyKind.QUORUM_DOWN, "/bin/qdown"),
    ]

    effects = set_health(monitor, 3.0, {RS1: True, RS2: True, RS3: False})  # live 4 < 5: stays
    assert not monitor.quorum_is_up(VS)
    assert monitor.desired_pool(VS) == SORRY_ONLY
    assert not any(isinstance(e, QuorumGained) for e in effects)

    effects = set_health(monitor, 4.0, up)  # live 6 >= 5
    assert QuorumGained(virtual_server=VS, live_weight=6) in effects
    assert (
        RunNotifyScript(
            script="/bin/qup", kind=NotifyKind.QUORUM_UP, virtual_server=VS, server=None
        )
        in effects
    )
    assert monitor.desired_pool(VS) == Pool(
        real_servers=tuple(RealServer.at(rs, 2) for rs in (RS1, RS2, RS3))
    )


def test_without_sorry_server_quorum_loss_keeps_the_live_servers_and_runs_quorum_down():
    monitor = three_server_monitor(quorum=6, quorum_down="/bin/qdown")
    monitor.start(0.0)
    effects = set_health(monitor, 0.0, {RS1: True, RS2: True, RS3: False})
    assert QuorumLost(virtual_server=VS, live_weight=4) in effects
    assert monitor.desired_pool(VS) == Pool(
        real_servers=(RealServer.at(RS1, 2), RealServer.at(RS2, 2)), in_quorum=False
    )


def test_sorry_server_inhibit_keeps_sorry_server_at_weight_zero_while_quorum_holds():
    monitor = three_server_monitor(sorry_server=SORRY, sorry_server_inhibit=True)
    monitor.start(0.0)
    assert monitor.desired_pool(VS).sorry_server == RealServer.at(SORRY, 0)


def test_notify_scripts_follow_the_pool_change_in_effect_order():
    monitor = three_server_monitor()
    monitor.start(0.0)
    effects = set_health(monitor, 0.0, {RS1: False, RS2: True, RS3: True})
    assert kinds(effects) == [ServerDown, PoolChanged, RunNotifyScript]
    effects = set_health(monitor, 1.0, {RS1: True, RS2: True, RS3: True})
    assert kinds(effects) == [ServerUp, PoolChanged, RunNotifyScript]
    assert effects[-1] == RunNotifyScript(
        script="/bin/up 192.168.0.54", kind=NotifyKind.NOTIFY_UP, virtual_server=VS, server=RS1
    )


def test_omega_shutdown_runs_notify_down_of_live_servers_and_quorum_down():
    monitor = three_server_monitor(omega=True, quorum_down="/bin/qdown")
    monitor.start(0.0)
    set_health(monitor, 0.0, {RS1: True, RS2: False, RS3: True})
    effects = monitor.shutdown()
    assert [(e.kind, e.server) for e in effects if isinstance(e, RunNotifyScript)] == [
        (NotifyKind.NOTIFY_DOWN, RS1),
        (NotifyKind.NOTIFY_DOWN, RS3),
        (NotifyKind.QUORUM_DOWN, None),
    ]
    assert monitor.next_deadline() is None
    assert due_checks(monitor, 1e9) == []


def test_without_omega_shutdown_runs_no_script():
    monitor = three_server_monitor(quorum_down="/bin/qdown")
    monitor.start(0.0)
    assert monitor.shutdown() == []


def test_a_result_arriving_after_shutdown_is_ignored():
    monitor = three_server_monitor()
    monitor.start(0.0)
    (checker, *_) = due_checks(monitor, 0.0)
    monitor.shutdown()
    assert monitor.handle(CheckFailed(checker=checker, reason="late"), 1.0) == []


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    retry=st.integers(min_value=0, max_value=4),
    alpha=st.booleans(),
    outcomes=st.lists(st.booleans(), max_size=40),
)
def test_server_state_and_schedule_match_keepalived_retry_rule(retry, alpha, outcomes):
    spec = CheckerSpec(delay_loop=10, retry=retry, delay_before_retry=1, alpha=alpha)
    monitor = one_server(spec)
    clock = Clock(monitor)
    up = not alpha
    failures = 0
    for passed in outcomes:
        previous_up = up
        effects = clock.result(clock.next_check(), passed)
        if passed:
            up, failures = True, 0
            expected_delay = 10
        else:
            failures += 1
            retrying = previous_up and failures <= retry
            up = retrying
            expected_delay = 1 if retrying else 10
        assert monitor.server_is_up(VS, RS1) == up
        assert monitor.next_deadline() == clock.now + expected_delay
        transitions = [e for e in effects if isinstance(e, ServerUp | ServerDown)]
        assert len(transitions) == (1 if up != previous_up else 0)
        in_pool = monitor.desired_pool(VS).real_servers == (RealServer.at(RS1, 1),)
        assert in_pool == up


@settings(max_examples=200, deadline=None)
@given(
    quorum=st.integers(min_value=0, max_value=7),
    hysteresis=st.integers(min_value=0, max_value=3),
    rounds=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=25),
)
def test_sorry_server_is_in_the_pool_exactly_while_quorum_is_lost(quorum, hysteresis, rounds):
    monitor = three_server_monitor(quorum=quorum, hysteresis=hysteresis, sorry_server=SORRY)
    monitor.start(0.0)
    quorum_up = monitor.quorum_is_up(VS)
    for now, health in enumerate(rounds):
        results = dict(zip((RS1, RS2, RS3), health, strict=True))
        for checker in due_checks(monitor, float(now)):
            event = (
                CheckSucceeded(checker=checker)
                if results[checker.server]
                else CheckFailed(checker=checker, reason="refused")
            )
            effects = monitor.handle(event, float(now))
            live = sum(2 for rs in (RS1, RS2, RS3) if monitor.server_is_up(VS, rs))
            gained = any(isinstance(e, QuorumGained) for e in effects)
            lost = any(isinstance(e, QuorumLost) for e in effects)
            if quorum_up:
                assert not gained
                assert lost == (live == 0 or live < quorum - hysteresis)
            else:
                assert not lost
                assert gained == (live > 0 and live >= quorum + hysteresis)
            quorum_up = (quorum_up or gained) and not lost
            assert monitor.quorum_is_up(VS) == quorum_up
            pool = monitor.desired_pool(VS)
            if quorum_up:
                assert pool.sorry_server is None
                assert len(pool.real_servers) == live // 2
            else:
                assert pool == SORRY_ONLY
