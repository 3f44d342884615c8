"""Maglev benchmark: table build time, balance, and how many flows move when a server leaves.

Run: .venv/bin/python bench/maglev.py [--servers 1000] [--repeat 3]
Prints one table; copy it into docs/benchmarks.md. Moved share is measured on the table itself
(buckets whose server changed): with a uniform flow hash that is the share of flows that move.

Two ways for a server to leave: it fails its health checks (the director keeps the configured pool
as the reference, maglev.build_stable_table -- what the daemon does), or it is deleted from the
configuration (a plain Maglev rebuild over the smaller pool).
"""

from __future__ import annotations

import argparse
import time

from vipkeeper.core import maglev


def backend_names(count: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:80" for i in range(count)]


def build_seconds(weights: dict[str, int], size: int, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        maglev.build_lookup_table(weights, size)
        timings.append(time.perf_counter() - start)
    return min(timings)


def disruption(count: int) -> tuple[int, float, float, float]:
    """(table size, moved on health failure, moved on removal from the configuration, owned)"""
    names = backend_names(count)
    size = maglev.table_size_for(count)
    reference = dict.fromkeys(names, 1)
    before = maglev.build_stable_table(reference, reference, size)
    leaving = names[count // 2]
    pool = {n: 1 for n in names if n != leaving}
    failed = maglev.build_stable_table(pool, reference, size)
    removed = maglev.build_lookup_table(pool, size)
    return (
        size,
        maglev.moved_fraction(before, failed),
        maglev.moved_fraction(before, removed),
        before.count(leaving) / size,
    )


def stable_build_seconds(count: int, repeat: int) -> float:
    names = backend_names(count)
    reference = dict.fromkeys(names, 1)
    pool = {n: 1 for n in names[: count // 2]}  # half the pool down: the most orphans to place
    size = maglev.table_size_for(count)
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        maglev.build_stable_table(pool, reference, size)
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    names = backend_names(args.servers)
    size = maglev.table_size_for(args.servers)
    equal = dict.fromkeys(names, 1)
    weighted = {name: 1 + index % 5 for index, name in enumerate(names)}
    print(f"table size for {args.servers} servers: {size} (smallest prime >= 131 x n, min 251)")
    print(f"build, equal weights:   {build_seconds(equal, size, args.repeat) * 1000:8.1f} ms")
    print(f"build, weights 1..5:    {build_seconds(weighted, size, args.repeat) * 1000:8.1f} ms")
    print(
        f"build, half the pool down: {stable_build_seconds(args.servers, args.repeat) * 1000:6.1f}"
        " ms"
    )
    shares = maglev.slot_shares(maglev.build_lookup_table(equal, size))
    print(
        f"balance, equal weights: min {min(shares.values()) * args.servers:.3f} / "
        f"max {max(shares.values()) * args.servers:.3f} x the fair share"
    )
    print()
    print(
        "one of N leaves   table size   minimum (1/N)   health failure (x 1/N)"
        "   removed from config (x 1/N)"
    )
    for count in (2, 3, 5, 10, 50, 100, args.servers):
        table_size, failed, removed, owned = disruption(count)
        print(
            f"N = {count:<12} {table_size:>10}   {1 / count:12.4%}   "
            f"{failed:9.4%} ({failed * count:4.2f})        "
            f"{removed:9.4%} ({removed * count:4.2f})   leaver owned {owned:.4%}"
        )


if __name__ == "__main__":
    main()
