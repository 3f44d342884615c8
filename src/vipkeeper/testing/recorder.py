"""Keeps the effects returned by cores, with the time and the router that returned them.

Must never interpret or execute the effects; it only stores and filters them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from vipkeeper.core.effects import Effect, ReportTransition
from vipkeeper.core.records import record

T = TypeVar("T")


@record
class Recorded:
    time: float
    source: str  # the router (or instance) that returned the effect
    effect: Effect


class EffectRecorder:
    """An append-only log of effects, with filters for assertions."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []

    def record(self, time: float, source: str, effects: Iterable[Effect]) -> None:
        self.records.extend(Recorded(time=time, source=source, effect=e) for e in effects)

    def of_type(
        self, kind: type[T], source: str | None = None, since: float = float("-inf")
    ) -> list[T]:
        return [
            r.effect
            for r in self.records
            if isinstance(r.effect, kind)
            and (source is None or r.source == source)
            and r.time >= since
        ]

    def timed(self, kind: type[T], source: str | None = None) -> list[tuple[float, T]]:
        return [
            (r.time, r.effect)
            for r in self.records
            if isinstance(r.effect, kind) and (source is None or r.source == source)
        ]

    def transitions(self, source: str | None = None) -> list[ReportTransition]:
        return self.of_type(ReportTransition, source)

    def clear(self) -> None:
        self.records.clear()
