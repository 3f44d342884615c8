"""What a VRRP state change tells the outside: the notify FIFOs and the notify scripts.

Owns which scripts an order runs (`notify_STATE`, then `notify` with keepalived's arguments);
scripts run beside the driver's effect queue, never in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine

from vipkeeper.config import model
from vipkeeper.core.effects import RunNotify
from vipkeeper.core.states import NotifyTarget
from vipkeeper.io.notify_fifo import NotifyFifos
from vipkeeper.io.scripts import ScriptRunner, notify_arguments

log = logging.getLogger("vipkeeper")


class NotifyScripts:
    """The driver's notify hook; `config` is the configuration in force (a reload replaces it)."""

    def __init__(
        self,
        config: model.Config,
        runner: ScriptRunner,
        fifos: NotifyFifos,
        spawn: Callable[[Coroutine[object, object, object]], None],
    ) -> None:
        self.config = config
        self._runner = runner
        self._fifos = fifos
        self._spawn = spawn

    def commands(self, order: RunNotify) -> list[tuple[model.Command, tuple[str, ...]]]:
        owner: model.VrrpInstance | model.VrrpSyncGroup | None
        if order.kind is NotifyTarget.GROUP:
            owner = next(
                (g for g in self.config.vrrp_sync_groups if g.name == order.instance), None
            )
        else:
            owner = next((i for i in self.config.vrrp_instances if i.name == order.instance), None)
        if owner is None:
            return []
        commands: list[tuple[model.Command, tuple[str, ...]]] = []
        specific = getattr(owner, f"notify_{order.state.lower()}", None)
        if specific is not None:
            commands.append((specific, ()))
        if owner.notify is not None:
            args = notify_arguments(
                kind=order.kind, name=order.instance, state=order.state, priority=order.priority
            )
            commands.append((owner.notify, args))
        return commands

    async def __call__(self, order: RunNotify) -> None:
        self._fifos.vrrp(
            kind=order.kind, name=order.instance, state=order.state, priority=order.priority
        )
        # Scripts run beside the effect queue, never in it: a slow notify_master must not
        # delay the next advertisement or address change.
        for command, args in self.commands(order):
            self._spawn(self._run(command, args))

    async def _run(self, command: model.Command, args: tuple[str, ...]) -> None:
        result = await self._runner.run(command.argv, args=args)
        if not result.ok:
            log.warning(
                "notify script %s failed: exit %s%s",
                " ".join(result.argv),
                result.exit_code,
                " (timed out)" if result.timed_out else "",
            )
