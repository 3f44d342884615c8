"""The running daemon as the operator reads it: the status document and the /metrics snapshot.

Owns the live look-ups they need at the moment they are asked (the clock, which VIPs are present,
the data plane's counters); the document's format is `status`'s, the exposition `metrics`'.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from vipkeeper import metrics, status
from vipkeeper.core.sync_group import SyncGroup

if TYPE_CHECKING:
    from vipkeeper.daemon import Daemon

log = logging.getLogger("vipkeeper")


class Snapshots:
    """Answers the control socket's `status` and the metrics server's scrape for `daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.check_latency = metrics.CheckLatency()

    async def status(self, _arguments: object = None) -> dict[str, object]:
        daemon = self._daemon
        assert daemon.driver is not None
        assert daemon.director is not None  # both made once the instances are in the election
        daemon.driver.catch_up()  # counters of instances on the autopilot, exact
        loop = asyncio.get_running_loop()
        return status.build_status(
            plan=daemon.plan,
            instances=daemon.instances,
            groups={
                name: machine
                for name, machine in daemon.driver.machines.items()
                if isinstance(machine, SyncGroup)
            },
            director=daemon.director,
            journal=daemon.journal,
            present_vips=await daemon.addresses.present(
                {v.dev for s in daemon.plan.settings.values() for v in s.virtual_addresses}
            ),
            now=time.time(),
            wall_offset=time.time() - loop.time(),
            vrrp_filter=None if daemon.vrrp_filter is None else await daemon.vrrp_filter.counters(),
        )

    async def metrics(self) -> metrics.Snapshot:
        daemon = self._daemon
        assert daemon.director is not None
        try:
            traffic, connections = await daemon.director.traffic()
        except Exception as exc:  # the counters are worth a warning, not a failed scrape
            log.warning("cannot read the data plane's counters: %s", exc)
            traffic, connections = {}, {}
        control = daemon.control
        return metrics.Snapshot(
            status=await self.status(),
            excluded_vips={
                instance.name: [
                    (str(ipaddress.ip_address(vip.address)), instance.vip_device(vip))
                    for vip in instance.virtual_ipaddresses_excluded
                ]
                for instance in daemon.config.vrrp_instances
            },
            garp_delay={name: s.garp_master_delay for name, s in daemon.plan.settings.items()},
            scripts=daemon.track_scripts.states(),
            transitions=dict(daemon.journal.transitions),
            reloads=dict(daemon.journal.reloads),
            control_requests=control.served if control is not None else 0,
            control_errors=dict(control.errors) if control is not None else {},
            check_latency=self.check_latency.snapshot(),
            data_plane_errors=daemon.director.apply_errors,
            server_traffic=traffic,
            service_connections=connections,
        )
