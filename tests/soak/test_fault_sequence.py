"""The soak's fault sequence: a function of the seed alone, covering every fault kind, with
reordering that holds packets back longer than an advert interval (else nothing overtakes)."""

from __future__ import annotations

import itertools

import pytest

from vipkeeper.testing.chaos import (
    ADVERT_INT,
    FAULTS,
    OBSERVER,
    REORDER_DELAY_MS,
    REORDER_PERCENT,
    fault_sequence,
)


def first(seed: int, count: int = 400) -> list[str]:
    return [f.describe() for f in itertools.islice(fault_sequence(seed), count)]


def test_a_seed_replays_the_same_faults_and_another_seed_does_not() -> None:
    assert first(7) == first(7)
    assert first(7) != first(8)


def test_every_fault_kind_is_drawn() -> None:
    kinds = {f.kind for f in itertools.islice(fault_sequence(3), 400)}
    assert kinds == set(FAULTS)


def test_reordering_is_seeded_and_holds_packets_longer_than_an_advert_interval() -> None:
    reorders = [f for f in itertools.islice(fault_sequence(11), 2000) if f.kind == "reorder"]
    assert len(reorders) > 20
    for fault in reorders:
        assert REORDER_PERCENT[0] <= fault.amount <= REORDER_PERCENT[1]
        assert REORDER_DELAY_MS[0] <= fault.delay <= REORDER_DELAY_MS[1]
        assert fault.delay / 1000 > ADVERT_INT  # later adverts overtake a held one
        assert fault.amount / 100 * fault.delay / 1000 <= ADVERT_INT / 2  # the slow class keeps up
        assert f"amount={fault.amount} delay={fault.delay}ms" in fault.describe()
    assert len({(f.amount, f.delay) for f in reorders}) > 5  # drawn, not fixed


def test_only_reordering_has_a_delay_and_the_observer_is_never_killed() -> None:
    for fault in itertools.islice(fault_sequence(5), 2000):
        assert (fault.delay > 0) == (fault.kind == "reorder")
        assert not (fault.kind == "kill" and fault.target == OBSERVER)


def test_narrowed_kinds_draw_only_those_and_all_kinds_is_the_default_sequence() -> None:
    narrowed = list(itertools.islice(fault_sequence(9, ("loss", "partition")), 400))
    assert {f.kind for f in narrowed} == {"loss", "partition"}
    default = [f.describe() for f in itertools.islice(fault_sequence(9, FAULTS), 400)]
    assert default == first(9)


def test_an_unknown_or_empty_kind_list_is_refused() -> None:
    with pytest.raises(ValueError, match="flood"):
        next(fault_sequence(1, ("loss", "flood")))
    with pytest.raises(ValueError, match="no fault kinds"):
        next(fault_sequence(1, ()))
