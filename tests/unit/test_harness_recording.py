"""A recorded fault (`make timeline`): the fault's mark is dated when it was issued, so a VIP
move the watcher saw while the call making the fault had not yet returned (the VIP gone while
`docker kill` waited on the engine) comes after the fault and is in the summary."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, ClassVar

from harness.faults import Fault
from harness.probes import Request
from harness.recording import summarize
from harness.timeline import Timeline


class _SlowKill(Fault):
    """A kill whose effect the watcher sees before the call returns."""

    name: ClassVar[str] = "kill"
    roles: ClassVar[tuple[str, ...]] = ("director",)

    def _apply(self) -> None:
        assert self.timeline is not None
        self.timeline.vip_changed(time.time(), frozenset())  # dated as the watcher dates it

    def _undo(self) -> None:
        pass


def _lab() -> Any:
    topology = SimpleNamespace(nodes={"dir1": SimpleNamespace(role="director")})
    return SimpleNamespace(kind="compose", topology=topology)


def _request(start: float, *, ok: bool) -> Request:
    return Request(
        kind="new", seq=0, conn=0, start=start, end=start + 0.01,
        status=200 if ok else None, error=None if ok else "timed out",
        server="rs1" if ok else None,
    )  # fmt: skip


def test_a_vip_move_seen_before_the_fault_call_returned_is_in_the_summary() -> None:
    timeline = Timeline(name="kill")
    timeline.vip_changed(timeline.started, frozenset({"dir1"}))
    fault = _SlowKill(_lab(), "dir1", timeline=timeline)

    returned = fault.apply()

    mark = next(m for m in timeline.marks if m.kind == "fault")
    assert mark.label == "kill dir1" and mark.at <= returned
    timeline.vip_changed(mark.at + 3.3, frozenset({"dir2"}))
    timeline.requests = [_request(mark.at - 1, ok=True), _request(mark.at + 0.5, ok=False)]
    lines = summarize(timeline).splitlines()
    assert lines[1:] == [
        "  VIP: nobody after 0.0 s",
        "  VIP: dir2 after 3.3 s",
        "  new connections: 1 answered, 1 failed",
        "  failures started between +0.5 s and +0.5 s from the fault",
    ]


def test_the_vip_before_the_fault_is_not_a_move() -> None:
    timeline = Timeline(name="pause", started=0.0)
    timeline.vip_changed(0.2, frozenset({"dir1"}))
    timeline.mark("pause dir1", kind="fault", at=2.0)
    assert summarize(timeline).splitlines() == [
        "pause dir1 at +2.0 s",
        "  new connections: 0 answered, 0 failed",
    ]
