"""The checker's grading, without the lab: each step PASSes or FAILs with what it saw, a
failure carries its hint, a probe that raises is a failure (not a crash), and the result
says whether every step passed."""

from __future__ import annotations

import io
from typing import Any

from harness.checks import Step, healthy, report, run


def step(what: str, result: tuple[bool, str] | Exception, hint: str = "do X") -> Step:
    def probe(lab: Any) -> tuple[bool, str]:
        if isinstance(result, Exception):
            raise result
        return result

    return Step(what=what, probe=probe, hint=hint)


def test_a_report_grades_each_step_with_a_hint_under_each_failure() -> None:
    outcomes = run(
        object(),  # type: ignore[arg-type]  (the probes here never touch the lab)
        [
            step("dir1 alone holds the VIP", (True, "held by dir1")),
            step("dir2 says it is BACKUP", (False, "MASTER (priority 100)"), hint="look at it"),
            step("the client resolves", RuntimeError("client is paused")),
        ],
    )
    out = io.StringIO()
    assert report("exercise 9: demo", outcomes, out) is False
    assert out.getvalue().splitlines() == [
        "exercise 9: demo",
        "  [PASS] 1. dir1 alone holds the VIP: held by dir1",
        "  [FAIL] 2. dir2 says it is BACKUP: MASTER (priority 100)",
        "         hint: look at it",
        "  [FAIL] 3. the client resolves: RuntimeError: client is paused",
        "         hint: do X",
        "1/3 steps passed",
    ]


def test_a_report_with_every_step_passing_says_so() -> None:
    outcomes = run(object(), [step("a", (True, "ok")), step("b", (True, "ok"))])  # type: ignore[arg-type]
    out = io.StringIO()
    assert report("start state:", outcomes, out) is True
    assert out.getvalue().splitlines()[-1] == "2/2 steps passed"
    assert "hint" not in out.getvalue()


def test_real_server_health_reads_the_status_document() -> None:
    assert healthy({"address": "192.168.0.54", "health": "up"}) is True
    assert healthy({"address": "192.168.0.54", "health": "down"}) is False
    assert healthy({"address": "192.168.0.54"}) is None
