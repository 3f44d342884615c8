"""Maglev consistent hashing: the lookup table that maps flow-hash buckets to real servers.

Owns: the table size rule, each backend's preference permutation and the weighted fill of the
table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
section 3.4). Must never: do I/O, read the clock, or use Python's `hash()` -- which is salted per
process -- because two directors with the same configuration must build the same table, byte for
byte, so that the same flow reaches the same real server whichever director is Master.

Health changes move only what they must (`build_stable_table`). A plain Maglev rebuild without
the leaver shifts a few survivors' buckets too (about 1.3 x 1/N moved at N = 10, over 6 x at
N = 1000), because every later claim in the fill sees a different table. So the fill runs over the
*reference* pool -- every configured server, healthy or not, at its configured weight -- and a
bucket whose owner is out of the pool is handed to the owner of the first in-pool bucket on a
probe sequence fixed by the bucket's index. A server that leaves moves exactly its own buckets
(plus those it had inherited); one that returns takes back exactly those. The result is still a
function of (reference pool, current pool) only, so directors agree.

Table size rule: the smallest prime >= max(MINIMUM_TABLE_SIZE, SLOTS_PER_BACKEND * n) for n
configured backends. 131 slots per backend keeps the imbalance between equal-weight backends
under about 1 % and the table prime makes every `skip` a generator of Z_M, so each permutation
visits every slot. The size must come from the *configured* backend count, not the healthy one:
a kernel lookup is `hash mod M`, so changing M would move nearly every flow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from vipkeeper.core.records import record

MINIMUM_TABLE_SIZE = 251
SLOTS_PER_BACKEND = 131


def is_prime(number: int) -> bool:
    if number < 2:
        return False
    if number % 2 == 0:
        return number == 2
    divisor = 3
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 2
    return True


def next_prime(number: int) -> int:
    """The smallest prime >= number."""
    candidate = max(number, 2)
    while not is_prime(candidate):
        candidate += 1
    return candidate


def table_size_for(backend_count: int) -> int:
    """Lookup table size for `backend_count` configured backends (see the module docstring)."""
    if backend_count < 0:
        raise ValueError(f"backend_count must be >= 0, got {backend_count}")
    return next_prime(max(MINIMUM_TABLE_SIZE, SLOTS_PER_BACKEND * backend_count))


@record
class Permutation:
    """Where a backend's preference list starts and how far it strides (Maglev §3.4)."""

    offset: int
    skip: int

    def slot(self, turn: int, size: int) -> int:
        return (self.offset + turn * self.skip) % size


def permutation_for(name: str, size: int) -> Permutation:
    """The backend's permutation, from two independent 64-bit hashes of its name.

    BLAKE2b with distinct personalisation strings gives the two hash functions the paper asks
    for; they are fixed, so the result is identical on every host and Python version.
    """
    if size < 2 or not is_prime(size):
        raise ValueError(f"table size must be a prime >= 2, got {size}")
    data = name.encode()
    offset_hash = hashlib.blake2b(data, digest_size=8, person=b"vipkeeper-off").digest()
    skip_hash = hashlib.blake2b(data, digest_size=8, person=b"vipkeeper-skip").digest()
    offset = int.from_bytes(offset_hash, "big") % size
    skip = int.from_bytes(skip_hash, "big") % (size - 1) + 1
    return Permutation(offset=offset, skip=skip)


def build_lookup_table(weights: Mapping[str, int], size: int) -> tuple[str, ...]:
    """Fill a table of `size` slots with backend names; slot i serves hash bucket i.

    Backends with weight 0 take no slot. Weights are honoured by turns: every round each backend
    earns `weight` credits and claims one slot (its next free preferred slot) per `max_weight`
    credits, so over the fill a backend claims slots in proportion to its weight. Backends take
    turns in name order, which makes the table a function of the mapping's content only.
    Returns an empty tuple when no backend has a positive weight.
    """
    if size < 2 or not is_prime(size):
        raise ValueError(f"table size must be a prime >= 2, got {size}")
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"weight of {name!r} must be >= 0, got {weight}")
    names = sorted(name for name, weight in weights.items() if weight > 0)
    if not names:
        return ()
    backend_weights = [weights[name] for name in names]
    max_weight = max(backend_weights)
    permutations = [permutation_for(name, size) for name in names]
    next_turn = [0] * len(names)
    credit = [0] * len(names)
    table: list[int] = [-1] * size
    filled = 0
    while True:
        for index, permutation in enumerate(permutations):
            credit[index] += backend_weights[index]
            while credit[index] >= max_weight:
                credit[index] -= max_weight
                turn = next_turn[index]
                slot = permutation.slot(turn, size)
                while table[slot] >= 0:
                    turn += 1
                    slot = permutation.slot(turn, size)
                table[slot] = index
                next_turn[index] = turn + 1
                filled += 1
                if filled == size:
                    return tuple(names[owner] for owner in table)


# Golden-ratio multiplier (Knuth's multiplicative hashing) spreads probe strides over Z_M.
_STRIDE_MULTIPLIER = 0x9E3779B1


def build_stable_table(
    weights: Mapping[str, int], reference: Mapping[str, int], size: int
) -> tuple[str, ...]:
    """A table over the current pool, `weights`, that moves as few buckets as it can.

    `reference` is the configured pool: every backend that may be in the pool, at its configured
    weight. The Maglev fill runs over the reference, except that an in-pool backend (positive
    weight in `weights`) fills at its current weight; buckets of backends out of the pool are
    then reassigned one by one: bucket b probes b + k * stride(b) (mod size, k = 1, 2, ...) and
    takes the owner of the first bucket owned by an in-pool backend. Since `size` is prime every
    stride visits every bucket, and each orphan lands on an in-pool backend with probability
    proportional to its share of the fill -- its weight.
    """
    live = {name: weight for name, weight in weights.items() if weight > 0}
    if not live:
        return ()
    fill_weights = {name: weight for name, weight in reference.items() if weight > 0}
    fill_weights.update(live)
    base = build_lookup_table(fill_weights, size)
    if all(owner in live for owner in base):
        return base
    in_pool = [owner in live for owner in base]
    if not any(in_pool):
        # The in-pool backends' weights are too small to win a bucket against the reference.
        return build_lookup_table(live, size)
    table = list(base)
    for bucket, owned in enumerate(in_pool):
        if owned:
            continue
        stride = (bucket * _STRIDE_MULTIPLIER) % (size - 1) + 1
        probe = (bucket + stride) % size
        while not in_pool[probe]:
            probe = (probe + stride) % size
        table[bucket] = base[probe]
    return tuple(table)


def slot_shares(table: Sequence[str]) -> dict[str, float]:
    """Fraction of the table each backend owns (for tests, benchmarks and `status`)."""
    counts: dict[str, int] = {}
    for name in table:
        counts[name] = counts.get(name, 0) + 1
    return {name: count / len(table) for name, count in counts.items()}


def moved_fraction(before: Sequence[str], after: Sequence[str]) -> float:
    """Share of buckets whose backend differs between two tables of the same size."""
    if len(before) != len(after):
        raise ValueError("tables of different sizes cannot be compared bucket by bucket")
    if not before:
        return 0.0
    return sum(1 for old, new in zip(before, after, strict=True) if old != new) / len(before)
