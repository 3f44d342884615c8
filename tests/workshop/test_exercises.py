"""Every exercise page run as an attendee would, against the lab: each `sh` block in order
(interactive ones bounded: the live view runs for a few seconds), its output matched against
the page's "what you should see", and the page's own `make check EX=<n>` passing.  Each
page's transcript lands in artifacts/workshop/pages/ for reading."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from harness import Lab
from harness.exercises import MY_TESTS, Exercise, exercises
from harness.topology import lab_topology
from tests.workshop.pages import blocks, mismatch

ROOT = lab_topology().root
EXERCISES = exercises(ROOT)
TRANSCRIPTS = ROOT / "artifacts" / "workshop" / "pages"
WATCH_SECONDS = "6"  # how long an interactive `make watch` block runs here
BLOCK_TIMEOUT = 900  # s: the longest block (exercise 7 runs a lab test)


def run_block(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env={**os.environ, "WATCH_SECONDS": WATCH_SECONDS, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.page.stem for e in EXERCISES])
def test_exercise_runs_as_documented(exercise: Exercise, healed_after: Lab) -> None:
    mine_existed = (ROOT / MY_TESTS).exists()
    TRANSCRIPTS.mkdir(parents=True, exist_ok=True)
    transcript = TRANSCRIPTS / f"{exercise.page.stem}.txt"
    log: list[str] = []
    try:
        for block in blocks(exercise.page):
            result = run_block(block.script)
            output = result.stdout + result.stderr
            log.append(f"$ {block.script}\n{output}(exit {result.returncode})\n")
            where = f"{exercise.page.name}:{block.line}"
            assert result.returncode == 0, f"{where}: exit {result.returncode}\n{output}"
            if block.expected is not None:
                problem = mismatch(block.expected, output)
                assert problem is None, f"{where}: {problem}"
    finally:
        transcript.write_text("\n".join(log))
        if not mine_existed:
            shutil.rmtree(ROOT / MY_TESTS, ignore_errors=True)


def test_a_check_fails_with_a_hint_when_the_lab_is_not_in_the_exercise_state(
    healed_after: Lab,
) -> None:
    """Exercise 2's checker on a lab where nothing was killed: FAIL lines with hints."""
    result = run_block("make check EX=2")
    assert result.returncode != 0
    assert "[FAIL] 1. dir1 (the MASTER at the start) is down" in result.stdout
    assert "hint: `make timeline NAME=kill NODE=dir1`" in result.stdout
    assert "[FAIL] 2. dir2 alone holds the VIP: held by dir1" in result.stdout
