"""Maglev lookup table: size rule, weighted shares, minimal disruption, determinism."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipkeeper.core import maglev


def names(count: int) -> list[str]:
    return [f"10.0.{i // 250}.{i % 250 + 1}:80" for i in range(count)]


@pytest.mark.parametrize(
    ("backends", "expected"),
    [(0, 251), (1, 251), (2, 263), (10, 1319), (1000, 131009)],
)
def test_table_size_is_smallest_prime_over_131_slots_per_backend(backends: int, expected: int):
    size = maglev.table_size_for(backends)
    assert size == expected
    assert maglev.is_prime(size)
    assert size >= max(maglev.MINIMUM_TABLE_SIZE, 131 * backends)
    assert not any(maglev.is_prime(n) for n in range(max(251, 131 * backends), size))


def test_every_permutation_visits_every_slot_once():
    size = 251
    for name in names(20):
        permutation = maglev.permutation_for(name, size)
        assert sorted(permutation.slot(turn, size) for turn in range(size)) == list(range(size))


def test_table_size_must_be_prime():
    with pytest.raises(ValueError, match="prime"):
        maglev.build_lookup_table({"a": 1}, 250)


def test_equal_weights_give_near_equal_shares():
    table = maglev.build_lookup_table({n: 1 for n in names(10)}, maglev.table_size_for(10))
    shares = maglev.slot_shares(table)
    assert set(shares) == set(names(10))
    for share in shares.values():
        assert share == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("weights", [(1, 3), (1, 2, 5), (10, 20, 30, 40)])
def test_shares_follow_weight_ratio(weights: tuple[int, ...]):
    backends = dict(zip(names(len(weights)), weights, strict=True))
    table = maglev.build_lookup_table(backends, maglev.table_size_for(len(weights)))
    shares = maglev.slot_shares(table)
    total = sum(weights)
    for name, weight in backends.items():
        assert shares[name] == pytest.approx(weight / total, abs=0.02)


def test_zero_weight_backend_takes_no_slot():
    table = maglev.build_lookup_table({"a": 1, "b": 0, "c": 2}, 251)
    assert "b" not in table
    assert len(table) == 251


def test_no_positive_weight_gives_empty_table():
    assert maglev.build_lookup_table({"a": 0}, 251) == ()
    assert maglev.build_lookup_table({}, 251) == ()


def _disruption(count: int) -> tuple[float, float, float]:
    """(moved share, share the leaver owned, share of survivors' buckets that stayed put)"""
    size = maglev.table_size_for(count)
    before = maglev.build_lookup_table({n: 1 for n in names(count)}, size)
    leaving = names(count)[count // 2]
    after = maglev.build_lookup_table({n: 1 for n in names(count) if n != leaving}, size)
    moved = maglev.moved_fraction(before, after)
    owned_by_leaver = before.count(leaving) / size
    unchanged_survivor_buckets = sum(
        1 for old, new in zip(before, after, strict=True) if old != leaving and old == new
    )
    return moved, owned_by_leaver, unchanged_survivor_buckets / (size - before.count(leaving))


@pytest.mark.parametrize("count", [3, 5, 10])
def test_one_backend_leaving_moves_close_to_one_nth_of_buckets(count: int):
    moved, owned_by_leaver, survivors_kept = _disruption(count)
    assert moved >= owned_by_leaver  # the leaver's buckets must all move
    assert moved == pytest.approx(1 / count, rel=0.25)
    assert survivors_kept > 0.9


def test_disruption_in_a_larger_pool_stays_under_twice_the_minimum():
    # Maglev trades some resilience for balance: refilling shifts a few survivors' buckets too
    moved, owned_by_leaver, survivors_kept = _disruption(50)
    assert owned_by_leaver <= moved < 2 / 50
    assert survivors_kept > 0.97


def test_leaver_buckets_go_only_to_survivors():
    size = maglev.table_size_for(4)
    after = maglev.build_lookup_table({n: 1 for n in names(4)[1:]}, size)
    assert set(after) == set(names(4)[1:])


def test_table_does_not_depend_on_insertion_order():
    forward = {n: i + 1 for i, n in enumerate(names(8))}
    backward = dict(reversed(list(forward.items())))
    size = maglev.table_size_for(8)
    assert maglev.build_lookup_table(forward, size) == maglev.build_lookup_table(backward, size)


def test_table_is_identical_across_processes_with_different_hash_seeds():
    script = (
        "from vipkeeper.core import maglev;"
        "t = maglev.build_lookup_table({f'10.0.0.{i}:80': i % 3 + 1 for i in range(1, 9)}, 1049);"
        "import hashlib; print(hashlib.sha256(repr(t).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12), st.integers(min_value=0, max_value=20), max_size=12
    )
)
def test_every_slot_is_filled_by_a_positive_weight_backend(weights: dict[str, int]):
    table = maglev.build_lookup_table(weights, 251)
    positive = {name for name, weight in weights.items() if weight > 0}
    if not positive:
        assert table == ()
    else:
        assert len(table) == 251
        assert set(table) <= positive


def test_moved_fraction_rejects_tables_of_different_size():
    with pytest.raises(ValueError):
        maglev.moved_fraction(("a",), ("a", "b"))


# -- build_stable_table: health changes move only the buckets they must ---------------------------


def _stable(count: int, out: set[str], weight: int = 1) -> tuple[str, ...]:
    reference = dict.fromkeys(names(count), weight)
    pool = {name: w for name, w in reference.items() if name not in out}
    return maglev.build_stable_table(pool, reference, maglev.table_size_for(count))


@pytest.mark.parametrize("count", [2, 3, 10, 200])
def test_a_server_leaving_the_pool_moves_exactly_its_own_buckets(count: int):
    leaving = names(count)[count // 2]
    before = _stable(count, set())
    after = _stable(count, {leaving})
    moved = [i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
    assert moved == [i for i, owner in enumerate(before) if owner == leaving]
    assert leaving not in after
    assert maglev.moved_fraction(before, after) == pytest.approx(1 / count, rel=0.05)


def test_a_server_returning_takes_back_exactly_what_it_had():
    everyone = _stable(20, set())
    assert _stable(20, {names(20)[3]}) != everyone
    assert _stable(20, set()) == everyone


def test_a_second_failure_moves_the_second_servers_buckets_and_what_it_inherited():
    first, second = names(12)[1], names(12)[7]
    one_out = _stable(12, {first})
    two_out = _stable(12, {first, second})
    for old, new in zip(one_out, two_out, strict=True):
        assert (old == new) == (old != second)
    assert set(two_out) == set(names(12)) - {first, second}


def test_full_pool_gives_the_plain_maglev_table():
    reference = dict.fromkeys(names(7), 2)
    size = maglev.table_size_for(7)
    assert maglev.build_stable_table(reference, reference, size) == maglev.build_lookup_table(
        reference, size
    )


def test_orphaned_buckets_are_shared_by_weight():
    reference = {"a:80": 1, "b:80": 1, "c:80": 3}
    size = maglev.table_size_for(3000)  # many buckets so the shares are tight
    table = maglev.build_stable_table({"b:80": 1, "c:80": 3}, reference, size)
    shares = maglev.slot_shares(table)
    assert shares["c:80"] / shares["b:80"] == pytest.approx(3, rel=0.1)


def test_a_pool_member_outside_the_reference_takes_its_weighted_part():
    # The sorry server is never a configured real server; with the pool down it gets every bucket.
    reference = dict.fromkeys(names(4), 1)
    assert set(maglev.build_stable_table({"sorry:80": 1}, reference, 563)) == {"sorry:80"}
    mixed = maglev.build_stable_table({names(4)[0]: 1, "extra:80": 1}, reference, 563)
    assert set(mixed) == {names(4)[0], "extra:80"}


def test_an_empty_pool_gives_an_empty_table():
    reference = dict.fromkeys(names(3), 1)
    assert maglev.build_stable_table({}, reference, 251) == ()
    assert maglev.build_stable_table(dict.fromkeys(names(3), 0), reference, 251) == ()


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.sampled_from(names(10)), st.integers(min_value=0, max_value=5), max_size=10),
    st.dictionaries(st.sampled_from(names(10)), st.integers(min_value=0, max_value=5), max_size=10),
)
def test_stable_table_fills_every_bucket_from_the_pool_and_is_order_free(
    pool: dict[str, int], reference: dict[str, int]
):
    table = maglev.build_stable_table(pool, reference, 251)
    positive = {name for name, weight in pool.items() if weight > 0}
    if not positive:
        assert table == ()
        return
    assert len(table) == 251
    assert set(table) <= positive
    backwards = dict(reversed(list(reference.items())))
    assert maglev.build_stable_table(dict(reversed(list(pool.items()))), backwards, 251) == table
