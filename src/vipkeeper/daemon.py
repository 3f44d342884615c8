"""`vipkeeper run`: wires the configuration, the pure core and the Linux adapters together.

Owns the daemon's life once `vipkeeper.launch` has put the instances in the election (loaded
the configuration, taken the pidfile, removed the addresses a crashed run left behind, opened
the sockets): signals (TERM/INT stop, HUP reload), link monitoring, and the order of start and
stop; on a reload, the clean-up of stale addresses for the instances it starts.
Its collaborators each own one job: the instances' source addresses (`source_addresses`),
tracked scripts (`track_scripts`), notify scripts (`notify_scripts`), background tasks
(`tasks`), how sockets are read (`read_policy`), a reload's steps and their order (`reloader`,
with what changes decided in `reload`); the instances' virtual MAC interfaces are `io.vmac`'s,
made before the instances start and removed after they stop. It wires in the operator's side, each
from its own module: the control socket (`control`), the status document and the /metrics
snapshot (`snapshots`, formats in `status` and `metrics`), the service manager's notices
(`service`) and the notify FIFOs (`io.notify_fifo`). Every protocol decision is the
core's; every kernel call is an adapter's. A configuration that does not load is refused with
its located diagnostics, and on reload the running configuration stays in force.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vipkeeper import read_policy, service, status
from vipkeeper.assemble import Plan, plan
from vipkeeper.config import model
from vipkeeper.core.effects import ReportTransition
from vipkeeper.core.events import (
    Event,
    PacketReceived,
    ShutdownRequested,
    Started,
    TrackChanged,
)
from vipkeeper.core.states import TrackKind
from vipkeeper.core.sync_group import SyncGroup
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.core.vrrp_settings import InstanceSettings
from vipkeeper.core.vrrp_wire import virtual_mac
from vipkeeper.drivers.vrrp import Driver
from vipkeeper.io.addresses import AddressManager
from vipkeeper.io.gratuitous import GratuitousSender
from vipkeeper.io.links import AddressChanged, LinkChanged, LinkEvent, LinkMonitor, link_states
from vipkeeper.io.notify_fifo import NotifyFifos
from vipkeeper.io.scripts import ScriptRunner, script_security
from vipkeeper.io.vrrp_raw import socket_family
from vipkeeper.io.vrrp_socket import VrrpSocketPool
from vipkeeper.launch import EarlyStart
from vipkeeper.notify_scripts import NotifyScripts
from vipkeeper.reloader import Reloader
from vipkeeper.source_addresses import SourceAddresses
from vipkeeper.tasks import BackgroundTasks
from vipkeeper.track_scripts import TrackScripts

# What the instances do not need to be in the election is imported once they are
# (`Daemon.after_election`), or never when the configuration does not use it.
if TYPE_CHECKING:
    from vipkeeper.control import ControlServer
    from vipkeeper.director import Director
    from vipkeeper.io.autopilot import Autopilot
    from vipkeeper.io.vmac import Vmac, VmacManager
    from vipkeeper.io.vrrp_filter import VrrpFilter
    from vipkeeper.metrics import MetricsServer
    from vipkeeper.snapshots import Snapshots

log = logging.getLogger("vipkeeper")

# How long shutdown waits for notify_stop and friends before leaving them behind.
NOTIFY_GRACE = 5.0


def _family_number(family: int) -> int:
    return 6 if family == socket.AF_INET6 else 4


class Daemon:
    """One `vipkeeper run`: `run()` starts everything, waits for a stop signal, stops it all."""

    def __init__(
        self,
        config: model.Config,
        config_path: str,
        *,
        autopilot: bool = True,
        release_ipvs: bool = True,
        control_socket: str | None = None,
        metrics_listen: tuple[str, int] | None = None,
        early: EarlyStart | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.release_ipvs = release_ipvs
        started = time.time()
        self.journal = status.Journal(
            started_at=started,
            config_file=config_path,
            config_checksum="",  # once the instances are in the election (run)
            config_loaded_at=started,
        )
        self.reloader = Reloader(self)
        # Made once the instances are in the election (after_election), then in_service is set.
        self.snapshots: Snapshots | None = None
        self.director: Director | None = None
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.in_service = asyncio.Event()
        self.control_socket = control_socket
        self.metrics_listen = metrics_listen
        self.plan: Plan = early.plan if early is not None else plan(config)
        # What vipkeeper.launch did before this module loaded; the first start carries on from it.
        self._early = early
        self.instances: dict[str, VrrpInstance] = {}
        self.routes: dict[tuple[str, int, int], tuple[str, str | None]] = {}
        self._stop = asyncio.Event()
        self._modes_pending = False
        self.tasks = BackgroundTasks()
        self.runner = ScriptRunner(security=script_security(config.global_defs))
        self.addresses = AddressManager()
        self.sources = SourceAddresses(self.addresses, self._feed_instance, self.tasks.spawn)
        self.sources.use(self.plan, ())
        self.track_scripts = TrackScripts(self.runner, self._on_script_changed)
        self.gratuitous = GratuitousSender()
        self.sockets = VrrpSocketPool(self._on_packet)
        self.vrrp_filter: VrrpFilter | None = None  # made when vrrp_peer_filter is on
        self.vmacs: VmacManager | None = None  # made when an instance has use_vmac
        self.use_autopilot = autopilot
        self.autopilot: Autopilot | None = None  # made once the instances are in the election
        self.driver: Driver | None = None
        self.links: LinkMonitor | None = None
        self.fifos = NotifyFifos(config.global_defs, self.runner)
        self.notify = NotifyScripts(config, self.runner, self.fifos, self.tasks.spawn)
        self.notifier = service.Notifier.from_environment()

    # -- life cycle -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reloader.soon)
        self.notifier.start_watchdog(loop)
        self.driver = Driver(
            machines={},
            sender=self.sockets,
            addresses=self.addresses,
            gratuitous=self.gratuitous,
            notify=self.notify,
            route_packet=self._route,
            before_timers=self.sockets.drain,
            on_transition=self._on_transition,
        )
        self.sockets.sink = self.driver.receive  # straight to the driver: no hop per packet
        try:
            await self.fifos.open()
            await self.start(self.plan)
            await self.after_election()
            log.info("vipkeeper running with %d VRRP instance(s)", len(self.instances))
            self.notifier.ready(self.service_status())
            await self._stop.wait()
            self.notifier.stopping()
            log.info("stopping: sending priority 0 and removing virtual addresses")
            await self.shutdown(list(self.driver.machines))
        finally:
            if self.metrics is not None:
                await self.metrics.stop()
            if self.control is not None:
                await self.control.stop()
            if self.director is not None:
                await self.director.stop(release=self.release_ipvs)
            if self.vmacs is not None:
                await self.vmacs.remove_all()
            if self.vrrp_filter is not None:
                await self.vrrp_filter.remove()
            await self._close()
            await self.fifos.close()
            self.notifier.close()
        return 0

    async def after_election(self) -> None:
        """Start what the instances do not need to be in the election, now that they are:
        the autopilot (it takes over the instances steady by then), the director (health
        checks, data plane, sync daemon), the operator's side (status, metrics, control socket)
        and the configuration's checksum. Their modules load here, not before the election
        (bench/startup.py measures exec to "in the election").

        The start's effects (adverts, addresses, gratuitous ARPs of an instance that is Master
        at once, the transitions' reports) are carried out first: importing these modules holds
        the loop for tens of milliseconds."""
        assert self.driver is not None
        await self.driver.drain()
        from vipkeeper.director import Director
        from vipkeeper.snapshots import Snapshots

        if self.use_autopilot:
            from vipkeeper.io.autopilot import Autopilot

            self.autopilot = Autopilot(self.sockets)
            self.driver.set_pilot(self.autopilot)
        self.snapshots = snapshots = Snapshots(self)
        self.director = Director(self.config, runner=self.runner, fifos=self.fifos)
        self.director.check_observers.append(
            lambda vs, server, record: snapshots.check_latency.observe(vs, server, record.latency)
        )
        await self.director.start()
        for name, instance in self.instances.items():  # states entered before it existed
            await self.director.vrrp_state(name, instance.state)
        self.journal.config_checksum = status.config_checksum(self.config.files)
        await self._open_control(snapshots)
        if self.metrics_listen is not None:
            from vipkeeper.metrics import MetricsServer

            self.metrics = MetricsServer(*self.metrics_listen)
            self.metrics.start(snapshots.metrics)
        self.in_service.set()

    async def _open_control(self, snapshots: Snapshots) -> None:
        if not self.control_socket:
            return
        from vipkeeper.control import ControlServer

        handlers = {"status": snapshots.status, "reload": self.reloader.request}
        control = ControlServer(self.control_socket, handlers)
        try:
            await control.start()
        except OSError as exc:
            # VRRP and the data plane matter more than the operator's socket: run on without it.
            log.error("control socket %s not served: %s", self.control_socket, exc)
            return
        self.control = control

    async def start(self, new: Plan, *, whole: Plan | None = None) -> None:
        """Start the instances and groups of `new`; `whole` is the complete plan they join
        (on a reload, `new` holds only what changed)."""
        assert self.driver is not None
        early, self._early = self._early, None
        if early is None:
            await self._remove_stale(new.settings.values())
        elif early.entered is not None:
            # Everything the start feeds is dated when the instances entered the election.
            self.driver.hold_clock(early.entered)
        try:
            await self._start(new, whole, early)
        finally:
            self.driver.hold_clock(None)

    async def _start(self, new: Plan, whole: Plan | None, early: EarlyStart | None) -> None:
        assert self.driver is not None
        adopted = {(s[0], s[1]) for s in early.sockets} if early is not None else set()
        started: list[str] = []
        for name in new.solo:
            self.instances[name] = VrrpInstance(new.settings[name])
            self.driver.machines[name] = self.instances[name]
            started.append(name)
        for group, members in new.groups.items():
            instances = [VrrpInstance(new.settings[m]) for m in members]
            for instance in instances:
                self.instances[instance.name] = instance
            self.driver.machines[group] = SyncGroup(group, instances)
            started.append(group)
        self.plan = whole or new
        self.routes = self.plan.routes()
        await self._sync_peer_filter()
        self.sources.use(self.plan, new.settings)
        await self._sync_vmacs()
        for settings in new.settings.values():
            family = socket_family(settings.family)
            if (settings.interface, int(family)) in adopted:
                continue
            try:
                await self.sockets.open(settings.interface, family)
            except OSError as exc:
                # The interface may appear later; the instance stays in FAULT until it does.
                log.error("%s: cannot listen on %s: %s", settings.name, settings.interface, exc)
        self.gratuitous.prepare({v.dev for s in new.settings.values() for v in s.virtual_addresses})
        if self.links is None:
            self.links = await LinkMonitor.open(self._on_link_event)
        await self._initial_facts(new.settings.values())
        used = {name for s in self.plan.settings.values() for name in s.track_scripts}
        self.track_scripts.start(self.config.vrrp_scripts, used)
        self.driver.pilotable = read_policy.pilotable(self.plan) if self.use_autopilot else ()
        self.driver.feed_all(Started(), started)
        if early is not None:
            # Only now, so that what they queued since `entered` comes after Started.
            for interface, sock_family, sock, index in early.sockets:
                self.sockets.adopt(interface, sock_family, sock, index)
            early.sockets.clear()
        self._update_receive_modes()

    async def _sync_peer_filter(self) -> None:
        enabled = self.config.global_defs.vrrp_peer_filter
        if self.vrrp_filter is None:
            if not enabled:
                return
            from vipkeeper.io.vrrp_filter import VrrpFilter

            self.vrrp_filter = VrrpFilter()
        await self.vrrp_filter.sync(enabled, self.plan.settings.values())

    async def _sync_vmacs(self) -> None:
        wanted = _wanted_vmacs(self.config)
        if self.vmacs is None:
            if not wanted:
                return
            from vipkeeper.io.vmac import VmacManager

            self.vmacs = VmacManager()
        await self.vmacs.sync(wanted)

    def _feed_instance(self, name: str, event: Event) -> None:
        """Give `event` to the instance `name`, inside its sync group if it has one."""
        assert self.driver is not None
        machine, member = self.plan.machine_of(name)
        self.driver.feed(machine, event, member=member)

    async def _initial_facts(self, settings: Iterable[InstanceSettings]) -> None:
        states = await link_states()
        by_link: dict[tuple[str, int], list[InstanceSettings]] = {}
        for item in settings:
            for interface in item.track_interfaces:
                if not states.get(interface, False):
                    event = TrackChanged(name=interface, up=False, kind=TrackKind.INTERFACE)
                    self._feed_instance(item.name, event)
            by_link.setdefault((self.plan.source_interface(item), item.family), []).append(item)
        for (interface, family), items in by_link.items():
            await self.sources.refresh(interface, family, items)

    async def _remove_stale(self, settings: Iterable[InstanceSettings]) -> None:
        vips: list[VirtualAddress] = [v for s in settings for v in s.virtual_addresses]
        try:
            await self.addresses.remove_stale(vips)  # each one removed is logged
        except Exception as exc:  # a missing interface must not stop the start
            log.warning("could not check for stale virtual addresses: %s", exc)

    async def shutdown(self, machines: list[str]) -> None:
        assert self.driver is not None
        self.driver.feed_all(ShutdownRequested(), machines)
        await self.driver.drain()
        await self.tasks.wait(NOTIFY_GRACE)

    async def _close(self) -> None:
        await self.track_scripts.stop()
        if self.links is not None:
            await self.links.close()
        if self.driver is not None:
            await self.driver.stop()
        self.sockets.close()
        self.gratuitous.close()
        self.addresses.close()

    # -- inputs -----------------------------------------------------------------------------

    def _on_transition(self, transition: ReportTransition) -> None:
        self.journal.record_transition(transition, time.time())
        if self.director is not None and self.director.follows(transition.instance):
            self.tasks.spawn(self.director.vrrp_state(transition.instance, transition.new))
        # Not urgent, and not on a takeover's path: once per burst of transitions, just after.
        if not self._modes_pending:
            self._modes_pending = True
            asyncio.get_running_loop().call_soon(self._after_transitions)

    def _after_transitions(self) -> None:
        self._update_receive_modes()
        self.notifier.status(self.service_status())

    def service_status(self) -> str:
        return service.status_line(i.state.name for i in self.instances.values())

    def _update_receive_modes(self) -> None:
        self._modes_pending = False
        for (interface, family), lazy in read_policy.lazy_links(self.instances.values()).items():
            self.sockets.set_lazy(interface, socket_family(family), lazy)

    def _route(self, interface: str, family: int, vrid: int) -> tuple[str, str | None] | None:
        return self.routes.get((interface, _family_number(family), vrid))

    def _on_packet(
        self, interface: str, family: int, packet: PacketReceived, received_at: float
    ) -> None:
        assert self.driver is not None
        self.driver.receive(interface, family, packet, received_at)

    def _on_link_event(self, event: LinkEvent) -> None:
        if isinstance(event, LinkChanged):
            for name, settings in self.plan.settings.items():
                if event.interface in settings.track_interfaces:
                    change = TrackChanged(
                        name=event.interface, up=event.up, kind=TrackKind.INTERFACE
                    )
                    self._feed_instance(name, change)
        elif isinstance(event, AddressChanged):
            self.sources.address_changed(
                event.address, event.interface, _family_number(event.family)
            )

    def _on_script_changed(self, script: str, up: bool) -> None:
        for name, settings in self.plan.settings.items():
            if script in settings.track_scripts:
                self._feed_instance(name, TrackChanged(name=script, up=up, kind=TrackKind.SCRIPT))


def _wanted_vmacs(config: model.Config) -> dict[str, Vmac]:
    if all(instance.use_vmac is None for instance in config.vrrp_instances):
        return {}
    from vipkeeper.io.vmac import Vmac

    return {
        instance.use_vmac: Vmac(
            name=instance.use_vmac,
            base=instance.interface,
            mac=virtual_mac(instance.virtual_router_id),
        )
        for instance in config.vrrp_instances
        if instance.use_vmac is not None
    }


def run_daemon(args: argparse.Namespace, config: model.Config, early: EarlyStart | None) -> int:
    """The daemon for `vipkeeper run`, once `vipkeeper.launch` has loaded `config` and, with
    `early`, put its instances in the election; returns the exit status."""
    daemon = Daemon(
        config,
        args.config_file,
        autopilot=args.autopilot,
        release_ipvs=args.release_ipvs,
        control_socket=args.control_socket or None,
        metrics_listen=args.metrics_listen,
        early=early,
    )
    return asyncio.run(daemon.run())
