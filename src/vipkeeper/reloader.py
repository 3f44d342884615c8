"""Carries a reload out on the running daemon: reads the file again, refuses or applies it.

Owns the order of a reload's steps (stop what restarts, reconfigure in place, hand the LVS half
over, start what is new), that one reload runs at a time, and the logged reading of the file the
daemon starts and reloads from; what a reload changes is `reload`'s decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from vipkeeper import status
from vipkeeper.assemble import Plan, plan
from vipkeeper.core.events import Reconfigured
from vipkeeper.core.sync_group import SyncGroup
from vipkeeper.launch import load_logged

if TYPE_CHECKING:
    from vipkeeper.daemon import Daemon

log = logging.getLogger("vipkeeper")


class Reloader:
    """Reloads `daemon`'s configuration on SIGHUP (`soon`) or the control socket (`request`)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._lock = asyncio.Lock()

    def soon(self) -> None:
        self._daemon.tasks.spawn(self.reload())

    async def request(self, _arguments: object) -> dict[str, object]:
        record = await self.reload()
        return {"result": record.result, "errors": list(record.errors), "changes": record.changes}

    async def reload(self) -> status.ReloadRecord:
        """Load the configuration again and apply the difference; a configuration with errors
        is refused and the running one stays in force."""
        notifier = self._daemon.notifier
        await self._daemon.in_service.wait()  # a SIGHUP while the daemon starts waits for it
        async with self._lock:  # SIGHUP and the control socket may ask at once
            notifier.reloading()
            try:
                record = await self._reload()
            finally:
                notifier.reloaded(self._daemon.service_status())
        self._daemon.journal.record_reload(record)
        return record

    async def _reload(self) -> status.ReloadRecord:
        from vipkeeper import reload  # what a reload changes: not needed to start

        daemon = self._daemon
        assert daemon.driver is not None
        path = daemon.config_path
        result = load_logged(path)
        if result.config is None:
            log.error("reload refused: %s has errors; the running configuration stays", path)
            errors = tuple(d.format() for d in result.errors)
            return status.ReloadRecord(time.time(), "refused", errors)
        old_config, config = daemon.config, result.config
        new = plan(config)
        what = reload.changes(old_config, config, daemon.plan, new)
        instances = daemon.instances
        steps = reload.plan_instances(
            daemon.plan, new, lambda name, settings: instances[name].can_reconfigure(settings)
        )
        stopping = sorted(steps.restarted_machines)
        await daemon.shutdown(stopping)
        for machine in stopping:
            for member in self._members(machine):
                daemon.instances.pop(member, None)
            del daemon.driver.machines[machine]
        for name, settings in steps.reconfigured.items():
            owner, in_group = new.machine_of(name)
            daemon.driver.feed(owner, Reconfigured(settings=settings), member=in_group)
        daemon.gratuitous.prepare(
            {v.dev for s in steps.reconfigured.values() for v in s.virtual_addresses}
        )
        await daemon.track_scripts.stop_changed(old_config, config)
        assert daemon.director is not None  # made before in_service is set
        if reload.lvs_differs(old_config, config):
            daemon.director = await daemon.director.hand_over(config)
            for name, instance in daemon.instances.items():
                await daemon.director.vrrp_state(name, instance.state)
        daemon.config = daemon.notify.config = config
        await daemon.fifos.reconfigure(config.global_defs)
        running = daemon.driver.machines
        fresh = Plan(
            settings={n: s for n, s in new.settings.items() if new.machine_of(n)[0] not in running},
            groups={g: m for g, m in new.groups.items() if g not in running},
            solo=tuple(n for n in new.solo if n not in running),
        )
        await daemon.start(fresh, whole=new)
        daemon.journal.forget(what.instances_removed)
        daemon.journal.record_config(path, status.config_checksum(config.files), time.time())
        log.info("reloaded %s: %s", path, what.summary())
        return status.ReloadRecord(time.time(), "applied", (), what.as_dict())

    def _members(self, machine_name: str) -> set[str]:
        assert self._daemon.driver is not None
        machine = self._daemon.driver.machines[machine_name]
        if isinstance(machine, SyncGroup):
            return set(machine.instances)
        return {machine_name}
