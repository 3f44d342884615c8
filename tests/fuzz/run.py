"""Coverage-guided fuzzing of one target with atheris (libFuzzer), for a bounded time.

    .venv/bin/python tests/fuzz/run.py TARGET SECONDS [CORPUS_DIR] [CRASH_DIR]

The corpus starts from tests/fuzz/seeds.py and grows in CORPUS_DIR (artifacts/fuzz/TARGET);
a failing input is written to CRASH_DIR (artifacts/fuzz/crashes) and the run stops with
libFuzzer's report. The last lines libFuzzer prints ("Done N runs in S second(s)") are the
executions. Each input must finish within 10 s and the process stay under 2 GiB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

with atheris.instrument_imports(include=["vipkeeper"]):
    from tests.fuzz import targets

from tests.fuzz import seeds  # noqa: E402


def main() -> None:
    name, seconds = sys.argv[1], int(sys.argv[2])
    corpus = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("artifacts/fuzz") / name
    crashes = Path(sys.argv[4]) if len(sys.argv) > 4 else Path("artifacts/fuzz/crashes")
    crashes.mkdir(parents=True, exist_ok=True)
    written = seeds.write(name, corpus)
    print(f"fuzz {name}: {written} seeds, {seconds} s", flush=True)
    target = targets.TARGETS[name]
    atheris.Setup(
        [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=10",
         "-rss_limit_mb=2048", f"-artifact_prefix={crashes}/{name}-", "-print_final_stats=1"],
        target,
    )  # fmt: skip
    atheris.Fuzz()


if __name__ == "__main__":
    main()
