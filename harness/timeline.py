"""Timelines of a lab test: what was done when, what the VIP did, and every client request;
written as JSON and drawn as a PNG (matplotlib, Agg backend) under artifacts/.

Owns: the artifact format and the plot.  Must never: talk to the lab.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.probes import Request

ARTIFACTS = Path(os.environ.get("LAB_ARTIFACTS", "artifacts/lab"))


@dataclass(frozen=True, kw_only=True)
class Mark:
    at: float  # wall clock, seconds
    label: str
    kind: str  # "fault", "repair", "vip"


@dataclass
class Timeline:
    name: str
    started: float = field(default_factory=time.time)
    marks: list[Mark] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def mark(self, label: str, *, kind: str = "fault", at: float | None = None) -> Mark:
        mark = Mark(at=time.time() if at is None else at, label=label, kind=kind)
        self.marks.append(mark)
        return mark

    def vip_changed(self, at: float, holders: frozenset[str]) -> None:
        """VipWatcher callback."""
        self.mark("VIP: " + (", ".join(sorted(holders)) or "nobody"), kind="vip", at=at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started": self.started,
            "marks": [asdict(m) for m in sorted(self.marks, key=lambda m: m.at)],
            "requests": [asdict(r) for r in self.requests],
        }

    def write(self, directory: Path = ARTIFACTS) -> tuple[Path, Path]:
        """Write NAME.json and NAME.png into `directory`; return both paths."""
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / f"{self.name}.json"
        json_path.write_text(json.dumps(self.to_dict(), indent=1))
        png_path = directory / f"{self.name}.png"
        plot(self, png_path)
        return json_path, png_path


_MARK_STYLE = {
    "fault": ("tab:red", "--"),
    "repair": ("tab:green", "--"),
    "vip": ("tab:purple", ":"),
}


def plot(timeline: Timeline, path: Path) -> None:
    """Requests over time, one panel per kind (new connections, keep-alive): latency by
    answering real server, failures as red crosses; faults, repairs and VIP moves as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = timeline.started
    kinds = ("new", "keepalive")
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 6), sharex=True, squeeze=False)
    servers = sorted({r.server for r in timeline.requests if r.ok and r.server})
    cmap = plt.get_cmap("tab10")
    colours = {server: cmap(i % 10) for i, server in enumerate(servers)}
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        rows = [r for r in timeline.requests if r.kind == kind]
        for server in servers:
            ok = [r for r in rows if r.ok and r.server == server]
            ax.scatter(
                [r.start - t0 for r in ok],
                [(r.end - r.start) * 1000 for r in ok],
                s=8,
                color=colours[server],
                label=server,
            )
        failed = [r for r in rows if not r.ok]
        if failed:
            ax.scatter(
                [r.start - t0 for r in failed],
                [(r.end - r.start) * 1000 for r in failed],
                s=30,
                marker="x",
                color="red",
                label=f"failed ({len(failed)})",
            )
        for mark in timeline.marks:
            colour, style = _MARK_STYLE.get(mark.kind, ("black", "-"))
            ax.axvline(mark.at - t0, color=colour, linestyle=style, linewidth=1)
        ax.set_ylabel(f"{kind}\nlatency (ms)")
        # Latencies span 1 ms (a normal answer) to seconds (a retransmission through a failover).
        ax.set_yscale("symlog", linthresh=10)
        top = max([100.0] + [(r.end - r.start) * 1000 * 2 for r in rows])
        ax.set_ylim(0, top)
        ax.set_yticks([t for t in (1, 10, 100, 1000, 10000, 100000) if t <= top])
        ax.set_yticklabels([f"{t:g}" for t in (1, 10, 100, 1000, 10000, 100000) if t <= top])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
    top = axes[0, 0]
    for mark in timeline.marks:
        top.annotate(
            mark.label,
            xy=(mark.at - t0, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=30,
            fontsize=7,
            va="bottom",
        )
    axes[-1, 0].set_xlabel(f"seconds since start ({timeline.name})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
