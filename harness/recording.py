"""Recording one fault as a timeline: who held the VIP and every client request, before, during
and after the fault, written as JSON and a plot under artifacts/workshop/.

Owns: how long to record around a fault (a baseline, then until the VIP has been steady for a
while after the longest Master_Down_Interval) and the one-paragraph summary.  Must never: undo
the fault (it stays applied and recorded, for `make heal`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.faults import make, remember
from harness.lab import Lab
from harness.probes import HttpProber, VipWatcher
from harness.timeline import Timeline
from harness.topology import REACTION_MARGIN
from vipkeeper.testing.waits import wait_until

BASELINE = 2.0  # s of normal traffic before the fault
STEADY = 2.0  # s without a VIP change that end the recording


def record_fault(
    lab: Lab, name: str, node: str | None, params: dict[str, Any]
) -> tuple[Path, Path, str]:
    timeline = Timeline(name=f"{name}")
    fault = make(lab, name, node, timeline=timeline, **params)
    longest = max(d.master_down_interval for d in lab.topology.directors)
    prober = HttpProber(lab, interval=0.1, timeout=1.0, keepalive_streams=2)
    with VipWatcher(lab, timeline.vip_changed) as watcher, prober:
        wait_until(lambda: watcher.history, timeout=10, what="the VIP watcher's first answer")
        started = time.time()
        wait_until(lambda: time.time() > started + BASELINE, timeout=BASELINE + 1, what="baseline")
        applied_at = fault.apply()
        remember(lab, fault)
        settle_after = applied_at + longest + REACTION_MARGIN

        def settled() -> bool:
            now = time.time()
            return now > settle_after and now > watcher.history[-1][0] + STEADY

        wait_until(settled, timeout=longest + 60, what="the VIP to settle after the fault")
    timeline.requests = prober.requests
    directory = lab.topology.root / "artifacts" / "workshop"
    json_path, png_path = timeline.write(directory)
    return json_path, png_path, summarize(timeline)


def summarize(timeline: Timeline) -> str:
    """A few lines: the VIP's moves after the timeline's fault (counted from its mark, when it
    was issued) and what the client saw."""
    fault = next(mark for mark in timeline.marks if mark.kind == "fault")
    issued_at = fault.at
    lines = [f"{fault.label} at +{issued_at - timeline.started:.1f} s"]
    for mark in sorted(timeline.marks, key=lambda m: m.at):
        if mark.kind == "vip" and mark.at >= issued_at:
            lines.append(f"  {mark.label} after {mark.at - issued_at:.1f} s")
    new = [r for r in timeline.requests if r.kind == "new"]
    failed = [r for r in new if not r.ok]
    lines.append(f"  new connections: {len(new) - len(failed)} answered, {len(failed)} failed")
    if failed:
        first, last = min(r.start for r in failed), max(r.start for r in failed)
        lines.append(
            f"  failures started between {first - issued_at:+.1f} s and "
            f"{last - issued_at:+.1f} s from the fault"
        )
    return "\n".join(lines)
