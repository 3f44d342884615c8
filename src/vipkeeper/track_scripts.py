"""The vrrp_scripts the instances track: one poller each, their rise/fall counts, their changes.

Owns which scripts run (those some instance tracks) and keeps a script's counts across a reload
that leaves it unchanged; what a change means for an instance is the core's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from vipkeeper.config import model
from vipkeeper.core.track import ScriptTracker
from vipkeeper.io.scripts import ScriptRunner, TrackScriptPoller

log = logging.getLogger("vipkeeper")


class TrackScripts:
    """Runs the tracked scripts; `on_change(name, up)` hears each rise or fall."""

    def __init__(self, runner: ScriptRunner, on_change: Callable[[str, bool], None]) -> None:
        self._runner = runner
        self._on_change = on_change
        self._pollers: dict[str, TrackScriptPoller] = {}
        self._trackers: dict[str, ScriptTracker] = {}

    def start(self, scripts: Iterable[model.VrrpScript], used: set[str]) -> None:
        """Start a poller for every script in `used` that has none yet."""
        for script in scripts:
            if script.name not in used or script.name in self._pollers:
                continue
            self._trackers[script.name] = ScriptTracker(rise=script.rise, fall=script.fall)
            poller = TrackScriptPoller(
                self._runner,
                name=script.name,
                command=script.command.argv,
                interval=script.interval,
                timeout=script.timeout if script.timeout is not None else script.interval,
                on_result=self._on_result,
            )
            self._pollers[script.name] = poller
            poller.start()

    def _on_result(self, name: str, ok: bool) -> None:
        change = self._trackers[name].record(ok)
        if change is None:
            return
        log.info("track script %s is now %s", name, "up" if change else "down")
        self._on_change(name, change)

    async def stop_changed(self, old: model.Config, new: model.Config) -> None:
        """Stop the pollers whose script changed or is no longer used; the others keep running
        with their rise/fall counts (`start` starts the new ones)."""
        used = {track.name for instance in new.vrrp_instances for track in instance.track_scripts}
        for name in list(self._pollers):
            if name in used and new.vrrp_script(name) == old.vrrp_script(name):
                continue
            await self._pollers.pop(name).stop()
            self._trackers.pop(name, None)

    async def stop(self) -> None:
        for poller in self._pollers.values():
            await poller.stop()

    def states(self) -> list[tuple[str, bool, bool]]:
        """(script, up, a check running now) of every running script, for /metrics."""
        return [
            (name, self._trackers[name].up, poller.checking)
            for name, poller in self._pollers.items()
        ]
