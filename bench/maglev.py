"""Maglev benchmark: table build time, balance, and how many flows move when a server leaves.

Run: .venv/bin/python bench/maglev.py [--servers 1000] [--repeat 3]
Prints one table; copy it into docs/benchmarks.md. Moved share is measured on the table itself
(buckets whose server changed): with a uniform flow hash that is the share of flows that move.
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


def disruption(count: int) -> tuple[int, float, float]:
    names = backend_names(count)
    size = maglev.table_size_for(count)
    before = maglev.build_lookup_table(dict.fromkeys(names, 1), size)
    leaving = names[count // 2]
    after = maglev.build_lookup_table({n: 1 for n in names if n != leaving}, size)
    return size, maglev.moved_fraction(before, after), before.count(leaving) / size


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
    shares = maglev.slot_shares(maglev.build_lookup_table(equal, size))
    print(
        f"balance, equal weights: min {min(shares.values()) * args.servers:.3f} / "
        f"max {max(shares.values()) * args.servers:.3f} x the fair share"
    )
    print()
    print("one of N leaves   table size   flows moved   minimum (1/N)   moved / minimum")
    for count in (2, 3, 5, 10, 50, 100, args.servers):
        table_size, moved, owned = disruption(count)
        print(
            f"N = {count:<12} {table_size:>10}   {moved:10.4%}   {1 / count:12.4%}"
            f"   {moved * count:10.2f}   (leaver owned {owned:.4%})"
        )


if __name__ == "__main__":
    main()
