"""The LVS half of the daemon: health-check the real servers, keep the data plane in step.

Owns: mapping `virtual_server` blocks to the health core's specs and the load balancer's
desired state, running the checkers, and applying each pool change to the chosen backend
(nftables or IPVS) as one whole desired state, coalesced so a burst of changes costs one
transaction; on IPVS, the kernel's connection-sync daemon (`lvs_sync_daemon`) following the
named VRRP instance's state. The data plane is installed on every director whatever its VRRP
state: only the Master receives VIP traffic, because only it answers ARP for the VIP.
Must never: forward a packet itself, or let one slow check or apply block the VRRP loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vipkeeper.config import lvs_model, model
from vipkeeper.core.pool import Pool
from vipkeeper.core.states import State
from vipkeeper.io.lb_backend import (
    BackendKind,
    LoadBalancerBackend,
    data_plane_choice,
    ipvs_available,
    select_backend,
)

# The health core, the checkers, Maglev and the data planes are imported where they are used: a
# daemon without virtual servers never loads them, and one with virtual servers loads them when
# its director starts, after the VRRP instances are in the election.
if TYPE_CHECKING:
    import random

    from vipkeeper.core import health, lb
    from vipkeeper.drivers.health import HealthScheduler
    from vipkeeper.io import checkers as io_checkers
    from vipkeeper.io.lvs_sync import SyncDaemons
    from vipkeeper.io.notify_fifo import NotifyFifos
    from vipkeeper.io.scripts import ScriptRunner

IPVS: BackendKind = "ipvs"
log = logging.getLogger("vipkeeper.lvs")

# Seconds before re-applying when a DR real server's MAC could not be resolved.
UNRESOLVED_RETRY = 1.0

_NO_POOL = Pool()  # a virtual server's pool before its first health verdict


@dataclass(frozen=True)
class CheckRecord:
    """One finished health check: when (loop time), whether it passed, why, how long it took."""

    finished_at: float
    ok: bool
    detail: str
    latency: float  # seconds from start to result


def _script(command: model.Command | None) -> str | None:
    return shlex.join(command.argv) if command is not None else None


def _status_codes(ranges: Sequence[tuple[int, int]]) -> frozenset[int]:
    return frozenset(code for low, high in ranges for code in range(low, high + 1))


def hash_seed(config: model.Config, vs: lvs_model.VirtualServer) -> int:
    """The jhash seed: configured, or derived from the service so every director agrees."""
    if config.global_defs.lvs_hash_seed is not None:
        return config.global_defs.lvs_hash_seed
    import zlib  # with the first virtual server, not at start-up

    return zlib.crc32(vs.key.encode())


def virtual_service(config: model.Config, vs: lvs_model.VirtualServer) -> lb.VirtualService:
    from vipkeeper.core import lb, maglev

    return lb.VirtualService(
        address=vs.address,
        port=vs.port,
        fwmark=vs.fwmark,
        protocol=vs.protocol,
        scheduler=vs.scheduler,
        scheduler_flags=frozenset(lb.SchedulerFlag(flag) for flag in vs.scheduler_flags),
        method=vs.method,
        persistence_timeout=vs.persistence_timeout or 0,
        hash_seed=hash_seed(config, vs),
        # Sized by the configured servers, never the healthy ones: a resize remaps every flow.
        table_size=maglev.table_size_for(max(len(vs.real_servers), 1)),
        # The reference pool that keeps buckets in place when a server fails its checks.
        configured_weights=tuple(
            sorted((str(vs.endpoint(rs)), rs.weight) for rs in vs.real_servers)
        ),
    )


def _checker_spec(
    vs: lvs_model.VirtualServer, checker: lvs_model.Checker, rng: random.Random
) -> health.CheckerSpec:
    from vipkeeper.core import health

    return health.CheckerSpec(
        delay_loop=checker.delay_loop,
        retry=checker.retry,
        delay_before_retry=checker.delay_before_retry,
        alpha=vs.alpha,
        misc_dynamic=isinstance(checker, lvs_model.MiscCheck) and checker.misc_dynamic,
        # keepalived's warmup: spread the first checks over one delay_loop.
        initial_delay=rng.uniform(0, checker.delay_loop),
    )


def health_spec(vs: lvs_model.VirtualServer, rng: random.Random) -> health.VirtualServerSpec:
    from vipkeeper.core import health

    sorry = vs.sorry_server
    return health.VirtualServerSpec(
        name=vs.key,
        real_servers=tuple(
            health.RealServerSpec(
                server=vs.endpoint(rs),
                weight=rs.weight,
                inhibit_on_failure=rs.inhibit_on_failure,
                notify_up=_script(rs.notify_up),
                notify_down=_script(rs.notify_down),
                checkers=tuple(_checker_spec(vs, c, rng) for c in rs.checkers),
            )
            for rs in vs.real_servers
        ),
        quorum=vs.quorum,
        hysteresis=vs.hysteresis,
        quorum_up=_script(vs.quorum_up),
        quorum_down=_script(vs.quorum_down),
        sorry_server=vs.endpoint(sorry) if sorry else None,
        sorry_server_inhibit=vs.sorry_server_inhibit,
        omega=vs.omega,
    )


def make_checker(
    vs: lvs_model.VirtualServer,
    rs: lvs_model.RealServer,
    checker: lvs_model.Checker,
    runner: ScriptRunner,
) -> io_checkers.Checker:
    from vipkeeper.io import checkers as io_checkers

    if isinstance(checker, lvs_model.MiscCheck):
        return io_checkers.MiscCheck(
            argv=checker.command.argv,
            timeout=checker.misc_timeout or checker.delay_loop,
            runner=io_checkers.misc_runner(runner),
        )
    address = checker.connect_ip or rs.address
    port = checker.connect_port or vs.endpoint(rs).port
    if isinstance(checker, lvs_model.TcpCheck):
        return io_checkers.TcpCheck(
            address=address, port=port, connect_timeout=checker.connect_timeout
        )
    return io_checkers.HttpGetCheck(
        address=address,
        port=port,
        virtualhost=vs.virtualhost,
        urls=tuple(
            io_checkers.UrlCheck(
                path=url.path,
                status_codes=_status_codes(url.status_codes),
                digest=url.digest,
                virtualhost=url.virtualhost,
            )
            for url in checker.urls
        ),
        connect_timeout=checker.connect_timeout,
    )


def ingress_devices(config: model.Config) -> dict[str, str]:
    """VIP -> the interface its traffic arrives on (the VRRP instance that owns the VIP)."""
    devices: dict[str, str] = {}
    for instance in config.vrrp_instances:
        for vip in (*instance.virtual_ipaddresses, *instance.virtual_ipaddresses_excluded):
            devices.setdefault(vip.address, instance.vip_device(vip))
    return devices


_BACKENDS: dict[model.LvsBackend, BackendKind] = {
    model.LvsBackend.AUTO: "auto",
    model.LvsBackend.IPVS: "ipvs",
    model.LvsBackend.NFTABLES: "nftables",
}


def _ipvs_backend() -> LoadBalancerBackend:
    # Imported here: IPVS support (pyroute2's generic netlink) is loaded only when IPVS is the
    # data plane.
    from vipkeeper.io.lb_ipvs import IpvsBackend

    return IpvsBackend()


def describe_data_plane(config: model.Config) -> str | None:
    """`vipkeeper check`'s line on the LVS data plane this host would use; None without LVS."""
    if not config.virtual_servers:
        return None
    return f"LVS data plane {data_plane_choice(_BACKENDS[config.global_defs.lvs_backend])}"


def default_backend(config: model.Config) -> LoadBalancerBackend:
    from vipkeeper.io.lb_nftables import NftablesBackend

    return select_backend(
        _BACKENDS[config.global_defs.lvs_backend],
        make_ipvs=_ipvs_backend,
        make_nftables=lambda: NftablesBackend(ingress_devices=ingress_devices(config)),
    )


class Director:
    """Health checks and data plane for all virtual servers of one configuration."""

    def __init__(
        self,
        config: model.Config,
        *,
        runner: ScriptRunner,
        backend: LoadBalancerBackend | None = None,
        rng: random.Random | None = None,
        fifos: NotifyFifos | None = None,
    ) -> None:
        self._rng = rng  # the checks' start jitter; a fresh generator when None
        self.config = config
        self._fifos = fifos
        self._models = {vs.key: vs for vs in config.virtual_servers}
        self._runner = runner
        self._backend = backend
        self._misc_dynamic: dict[health.CheckerId, bool] = {}
        # The last finished check of each real server, by (virtual server, real server).
        self.last_checks: dict[tuple[str, health.Endpoint], CheckRecord] = {}
        # Told of each finished check too (the metrics' latency histogram).
        self.check_observers: list[Callable[[str, health.Endpoint, CheckRecord], None]] = []
        self._pools: dict[str, Pool] = {}
        self._dirty = asyncio.Event()
        self._applier: asyncio.Task[None] | None = None
        self._applier_stopped = False  # the apply loop ends even if its cancellation is lost
        self._tasks: set[asyncio.Task[object]] = set()
        self.applied: tuple[lb.VirtualServer, ...] | None = None
        self.apply_errors = 0
        self._sync_settings = config.global_defs.lvs_sync_daemon
        self._sync: SyncDaemons | None = None
        self._sync_lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return bool(self._models)

    # The services, the health monitor and its scheduler are made at their first use (see the
    # imports), when the director starts.

    @functools.cached_property
    def _services(self) -> dict[str, lb.VirtualService]:
        return {vs.key: virtual_service(self.config, vs) for vs in self.config.virtual_servers}

    @functools.cached_property
    def monitor(self) -> health.HealthMonitor:
        import random

        from vipkeeper.core import health

        rng = self._rng or random.Random()
        return health.HealthMonitor(health_spec(vs, rng) for vs in self.config.virtual_servers)

    @functools.cached_property
    def _scheduler(self) -> HealthScheduler:
        from vipkeeper.core import health
        from vipkeeper.drivers.health import HealthScheduler

        checkers: dict[health.CheckerId, io_checkers.Checker] = {}
        for vs in self.config.virtual_servers:
            for rs in vs.real_servers:
                endpoint = vs.endpoint(rs)
                for index, checker in enumerate(rs.checkers):
                    checker_id = health.CheckerId(
                        virtual_server=vs.key, server=endpoint, index=index
                    )
                    checkers[checker_id] = make_checker(vs, rs, checker, self._runner)
                    if isinstance(checker, lvs_model.MiscCheck):
                        self._misc_dynamic[checker_id] = checker.misc_dynamic
        scheduler = HealthScheduler(self.monitor, checkers, self._emit)
        scheduler.on_check = self._on_check
        return scheduler

    # -- read-only views for status and metrics -------------------------------------------------

    @property
    def backend_name(self) -> str | None:
        """The data plane in use ("nftables", "ipvs"), None before start or with no service."""
        return self._backend.name if self._backend is not None else None

    def service(self, name: str) -> lb.VirtualService:
        return self._services[name]

    def pool(self, name: str) -> Pool:
        """The pool the data plane is told to serve (sorry server included)."""
        return self._pools.get(name, _NO_POOL)

    @staticmethod
    def real_servers(
        vs: lvs_model.VirtualServer,
    ) -> list[tuple[lvs_model.RealServer, health.Endpoint]]:
        return [(rs, vs.endpoint(rs)) for rs in vs.real_servers]

    @staticmethod
    def sorry_server(vs: lvs_model.VirtualServer) -> health.Endpoint | None:
        return vs.endpoint(vs.sorry_server) if vs.sorry_server else None

    async def traffic(
        self,
    ) -> tuple[dict[tuple[str, str, int], tuple[int, int]], dict[str, int]]:
        """The data plane's counters by virtual server name: ((vs, address, port) -> (packets,
        bytes) forwarded to each real server, vs -> connections forwarded); empty where the
        backend reads none (IPVS keeps its own, which node_exporter's IPVS collector reads)."""
        read = getattr(self._backend, "counters", None)
        if read is None:
            return {}, {}
        counters = await read()
        names = {service.key: name for name, service in self._services.items()}
        servers: dict[tuple[str, str, int], tuple[int, int]] = {}
        for (key, server), value in counters.servers.items():
            if key in names:
                address, _, port = server.rpartition(":")
                servers[(names[key], address.strip("[]"), int(port))] = value
        connections = {names[key]: n for key, n in counters.connections.items() if key in names}
        return servers, connections

    def _on_check(
        self, checker: health.CheckerId, event: health.HealthEvent, now: float, latency: float
    ) -> None:
        from vipkeeper.core import health

        if isinstance(event, health.CheckSucceeded):
            ok, detail = True, "check succeeded"
        elif isinstance(event, health.CheckFailed):
            ok, detail = False, event.reason
        else:
            dynamic = self._misc_dynamic.get(checker, False)
            outcome, _ = health.misc_outcome(event.exit_code, dynamic=dynamic)
            ok = outcome is health.Outcome.PASSED
            detail = f"script exited {event.exit_code}"
        record = CheckRecord(finished_at=now, ok=ok, detail=detail, latency=latency)
        self.last_checks[(checker.virtual_server, checker.server)] = record
        for observer in self.check_observers:
            observer(checker.virtual_server, checker.server, record)

    async def start(self) -> None:
        if self.active and self._backend is None:
            self._backend = default_backend(self.config)
        await self._start_sync()
        if not self.active:
            return
        assert self._backend is not None
        log.info(
            "LVS: %d virtual server(s) on the %s data plane (%s)",
            len(self._services),
            self._backend.name,
            data_plane_choice(_BACKENDS[self.config.global_defs.lvs_backend]),
        )
        self._applier_stopped = False
        self._applier = asyncio.get_running_loop().create_task(self._apply_loop())
        self._scheduler.start()

    async def _start_sync(self) -> None:
        """The Backup sync thread from start-up, as keepalived does; IPVS only."""
        if self._sync_settings is None or self._sync is not None:
            return  # not configured, or handed over by the Director this one succeeds
        if self._backend is not None:
            plane = self._backend.name
        elif self.config.global_defs.lvs_backend is model.LvsBackend.NFTABLES:
            plane = "nftables"
        else:
            plane = IPVS if ipvs_available() else "none: the kernel has no IPVS"
        if plane != IPVS:
            log.warning(
                "lvs_sync_daemon: ignored, it needs the IPVS data plane (this one: %s)", plane
            )
            return
        # Imported here: IPVS support is loaded only when IPVS is the data plane.
        from vipkeeper.io.lvs_sync import SyncDaemons

        self._sync = SyncDaemons(self._sync_settings)
        await self.vrrp_state(self._sync_settings.instance, State.BACKUP)

    def follows(self, instance: str) -> bool:
        """Whether the sync daemon moves with VRRP instance `instance`."""
        return self._sync is not None and instance == self._sync.settings.instance

    async def vrrp_state(self, instance: str, state: State) -> None:
        """VRRP instance `instance` entered `state`: move the sync daemon if it follows it."""
        if not self.follows(instance):
            return
        async with self._sync_lock:  # FIFO: the kernel sees the states in their order
            if self._sync is None:  # stopped meanwhile
                return
            try:
                await self._sync.follow(state)
            except Exception as exc:
                log.error("lvs_sync_daemon: following %s into %s failed: %s", instance, state, exc)

    async def _stop_sync(self) -> None:
        if self._sync is not None:
            async with self._sync_lock:
                sync, self._sync = self._sync, None
                try:
                    await sync.stop()
                except Exception as exc:
                    log.error("lvs_sync_daemon: stopping failed: %s", exc)

    async def stop(self, *, release: bool = True) -> None:
        """Stop checking and syncing; with `release`, clear the data plane too (otherwise the
        kernel keeps forwarding to the last applied pool, as keepalived's --dont-release-ipvs)."""
        await self._stop_sync()
        if not self.active:
            return
        await self._scheduler.stop()
        await self._stop_applier()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._backend is not None and not release:
            log.info("LVS: %d virtual server(s) left on the %s data plane (--dont-release-ipvs)",
                     len(self.applied or ()), self._backend.name)  # fmt: skip
        elif self._backend is not None:
            try:
                await self._backend.clear()
            except Exception as exc:
                log.error("LVS: clearing the %s data plane failed: %s", self._backend.name, exc)

    async def hand_over(self, config: model.Config) -> Director:
        """A reload: the Director for `config`, which takes over this one's data plane (no
        clear: the kernel keeps forwarding) and the health of every real server whose settings
        did not change. This one stops without running shutdown (omega) scripts.

        A change of `lvs_backend` is the exception: the old data plane is cleared and a new one
        starts."""
        same_plane = config.global_defs.lvs_backend == self.config.global_defs.lvs_backend
        if not same_plane:
            await self.stop()
            successor = Director(config, runner=self._runner, fifos=self._fifos)
            successor.check_observers = self.check_observers
            await successor.start()
            return successor
        successor = Director(config, runner=self._runner, backend=self._backend, fifos=self._fifos)
        successor.check_observers = self.check_observers
        successor.apply_errors = self.apply_errors
        if self.active:
            await self._scheduler.stop(shutdown=False)
            await self._stop_applier()
        if self._backend is not None:
            update = getattr(self._backend, "set_ingress_devices", None)
            if update is not None:
                update(ingress_devices(config))
            if not successor.active:
                await self._backend.clear()  # no virtual server left
        before = {
            (vs.key, endpoint): rs for vs in self.config.virtual_servers
            for rs, endpoint in self.real_servers(vs)
        }  # fmt: skip
        after = {
            (vs.key, endpoint): rs for vs in config.virtual_servers
            for rs, endpoint in self.real_servers(vs)
        }  # fmt: skip
        successor.monitor.carry_over(
            self.monitor,
            asyncio.get_running_loop().time(),
            unchanged=lambda vs, server: before.get((vs, server)) == after.get((vs, server)),
        )
        successor.last_checks = {
            key: record
            for key, record in self.last_checks.items()
            if successor.monitor.has_server(*key)
        }
        if self._sync is not None and successor._sync_settings == self._sync_settings:
            successor._sync, self._sync = self._sync, None  # the kernel's threads keep running
        else:
            await self._stop_sync()
        await successor.start()
        return successor

    def desired(self) -> tuple[lb.VirtualServer, ...]:
        from vipkeeper.core import lb

        return tuple(
            lb.VirtualServer.serving(service, self.pool(name))
            for name, service in self._services.items()
        )

    def _emit(self, effects: Sequence[health.HealthEffect]) -> None:
        from vipkeeper.core import health

        for effect in effects:
            if isinstance(effect, health.PoolChanged):
                self._pools[effect.virtual_server] = effect.pool
                self._dirty.set()
            elif isinstance(effect, health.ServerUp | health.ServerDown):
                state = "up" if isinstance(effect, health.ServerUp) else "down"
                if self._fifos is not None:
                    vs = self._models[effect.virtual_server]
                    server = effect.server
                    self._fifos.real_server(vs, server.address, server.port, up=state == "up")
                log.info(
                    "LVS %s: real server %s is %s (%s)",
                    effect.virtual_server,
                    effect.server,
                    state,
                    effect.reason,
                    extra={
                        "virtual_server": effect.virtual_server,
                        "real_server": str(effect.server),
                    },
                )
            elif isinstance(effect, health.QuorumLost | health.QuorumGained):
                state = "gained" if isinstance(effect, health.QuorumGained) else "lost"
                if self._fifos is not None:
                    vs = self._models[effect.virtual_server]
                    self._fifos.virtual_server(vs, up=state == "gained")
                log.warning(
                    "LVS %s: quorum %s (live weight %d)",
                    effect.virtual_server,
                    state,
                    effect.live_weight,
                )
            elif isinstance(effect, health.WeightChanged):
                log.info(
                    "LVS %s: %s weight %d -> %d",
                    effect.virtual_server,
                    effect.server,
                    effect.old,
                    effect.new,
                )
            elif isinstance(effect, health.RunNotifyScript):
                task = asyncio.get_running_loop().create_task(self._runner.run(effect.script))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _stop_applier(self) -> None:
        """End the apply loop. Cancelling it is not enough on its own: a backend call that
        completes in the same loop iteration as the cancel can swallow it (as asyncio.wait_for
        does in CPython 3.11, which the daemon's own code never uses: test_bounded_waits.py),
        and the loop would then wait for the next change forever. So the loop also checks a
        flag, and is woken to see it."""
        if self._applier is None:
            return
        self._applier_stopped = True
        self._dirty.set()
        self._applier.cancel()
        await asyncio.gather(self._applier, return_exceptions=True)

    async def _apply_loop(self) -> None:
        from vipkeeper.core import lb

        assert self._backend is not None
        while True:
            await self._dirty.wait()  # _stop_applier sets it too, to wake the loop to return
            if self._applier_stopped:
                return
            self._dirty.clear()
            desired = self.desired()
            try:
                await self._backend.apply(desired)
            except Exception as exc:
                # The kernel keeps the previous state; the next pool change tries again.
                self.apply_errors += 1
                log.error("LVS: applying to %s failed: %s", self._backend.name, exc)
                continue
            self.applied = desired
            log.info(
                "LVS: applied %s to %s",
                ", ".join(
                    f"{v.service.address or v.service.fwmark}:{v.service.port}="
                    f"{len(lb.forwarding_servers(v))} server(s)"
                    for v in desired
                ),
                self._backend.name,
            )
            if getattr(self._backend, "unresolved", ()):
                # Some real servers' MACs are not known yet (no ARP answer so far): try again
                # shortly rather than waiting for the next health change.
                asyncio.get_running_loop().call_later(UNRESOLVED_RETRY, self._dirty.set)
