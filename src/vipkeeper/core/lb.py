"""Desired load-balancer state, and what a data plane must do to reach it.

Owns: the virtual services the data planes consume, each serving a pool (`core.pool`, as the
health checks leave it: a real server that left the pool is absent, an inhibited one has weight
0), which servers actually receive traffic (the sorry server on quorum loss), `diff()` from one
desired state to the next as a list of IPVS-style operations, and `build_table()` -- the Maglev
table the nftables data plane indexes with a kernel `jhash` of the flow. Must never: touch the
kernel, read the clock, or depend on the order the configuration listed servers in (two
directors must agree).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence

from vipkeeper.core.lb_kinds import ForwardingMethod as ForwardingMethod
from vipkeeper.core.lb_kinds import Protocol as Protocol
from vipkeeper.core.lb_kinds import Scheduler as Scheduler
from vipkeeper.core.lb_kinds import SchedulerFlag as SchedulerFlag
from vipkeeper.core.pool import Pool, check_port
from vipkeeper.core.pool import RealServer as RealServer  # the data planes' per-server record
from vipkeeper.core.records import record

# The configuration model imports this module for its closed sets, in every daemon: Maglev is
# imported where it is used, with the first load balancer.


@record
class ServiceKey:
    """What identifies a virtual service to the kernel: address+port+protocol, or a fwmark."""

    protocol: Protocol
    address: str | None
    port: int | None
    fwmark: int | None


@record
class VirtualService:
    """One `virtual_server` block, minus its real servers.

    `table_size` is the Maglev table size for the nftables data plane. The configuration layer
    sets it from the number of *configured* real servers (maglev.table_size_for), so health
    changes never resize the table; None falls back to the count passed to build_table().
    `hash_seed` seeds the kernel jhash; directors that share it choose the same real server for
    the same flow. `configured_weights` is every configured real server (RealServer.name) with its
    configured weight: the reference pool of maglev.build_stable_table, so a server that fails a
    health check moves only its own buckets. Empty means the table is built from the current pool
    alone.
    """

    address: str | None = None
    port: int | None = None
    fwmark: int | None = None
    protocol: Protocol = Protocol.TCP
    scheduler: Scheduler = Scheduler.WEIGHTED_ROUND_ROBIN
    scheduler_flags: frozenset[SchedulerFlag] = frozenset()
    method: ForwardingMethod = ForwardingMethod.DR
    persistence_timeout: int = 0
    hash_seed: int = 0
    table_size: int | None = None
    configured_weights: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.fwmark is None:
            if self.address is None or self.port is None:
                raise ValueError("a virtual service needs an address and a port, or a fwmark")
            ipaddress.ip_address(self.address)
            check_port(self.port)
        elif self.address is not None or self.port is not None:
            raise ValueError("a fwmark service has no address or port")
        elif not 0 < self.fwmark < 2**32:
            raise ValueError(f"fwmark must be in 1..4294967295, got {self.fwmark}")
        if not 0 <= self.hash_seed < 2**32:
            raise ValueError(f"hash_seed must fit in 32 bits, got {self.hash_seed}")
        if self.persistence_timeout < 0:
            raise ValueError("persistence_timeout must be >= 0")
        from vipkeeper.core import maglev

        if self.table_size is not None and not maglev.is_prime(self.table_size):
            raise ValueError(f"table_size must be a prime, got {self.table_size}")

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(
            protocol=self.protocol, address=self.address, port=self.port, fwmark=self.fwmark
        )

    @property
    def ip_version(self) -> int:
        if self.address is None:
            return 4
        return ipaddress.ip_address(self.address).version


@record
class VirtualServer(Pool):
    """A virtual service with the pool it serves (the real servers currently in it, the sorry
    server, whether quorum holds)."""

    service: VirtualService

    @classmethod
    def serving(cls, service: VirtualService, pool: Pool) -> VirtualServer:
        """`service` serving `pool`."""
        fields = {field.name: getattr(pool, field.name) for field in dataclasses.fields(Pool)}
        return cls(service=service, **fields)


def destinations(virtual_server: VirtualServer) -> tuple[RealServer, ...]:
    """Every destination the kernel should hold for the service, sorted by (address, port).

    Real servers are kept with their weight (0 stays installed, so IPVS lets established
    connections finish). While the sorry server is active it is the only one with a positive
    weight: the real servers are held at weight 0. An idle sorry server is in the pool only with
    sorry_server_inhibit (the health monitor leaves it out otherwise), and then held at weight 0.
    """
    servers = sorted(virtual_server.real_servers, key=lambda s: _sort_key(s.key))
    sorry = virtual_server.sorry_server
    if sorry is None:
        return tuple(servers)
    if not virtual_server.sorry_active:
        if any(s.key == sorry.key for s in servers):
            return tuple(servers)
        idle = dataclasses.replace(sorry, weight=0)
        return tuple(sorted([*servers, idle], key=lambda s: _sort_key(s.key)))
    held = [dataclasses.replace(s, weight=0) for s in servers if s.key != sorry.key]
    return tuple(sorted([*held, sorry], key=lambda s: _sort_key(s.key)))


def forwarding_servers(virtual_server: VirtualServer) -> tuple[RealServer, ...]:
    """The servers that receive new flows: positive weight, sorted; the sorry server if active."""
    return tuple(s for s in destinations(virtual_server) if s.weight > 0)


def table_size(virtual_server: VirtualServer) -> int:
    """Maglev table size: the service's configured size, else one for every real server listed.

    Pass the *configured* servers (health-check failures as weight 0) or set
    VirtualService.table_size: a size that follows the healthy count would remap every flow.
    """
    from vipkeeper.core import maglev

    configured = len(virtual_server.real_servers)
    return virtual_server.service.table_size or maglev.table_size_for(max(configured, 1))


def build_table(
    service: VirtualService, servers: Sequence[RealServer], *, size: int | None = None
) -> tuple[RealServer, ...]:
    """The Maglev lookup table: element i is the real server for flow-hash bucket i.

    `servers` are the candidates (weight-0 ones take no bucket). The size is `size`, else
    `service.table_size`, else maglev.table_size_for(len(servers)). Buckets are kept stable
    against `service.configured_weights` (see maglev.build_stable_table).
    An empty tuple means no server can take traffic.
    """
    from vipkeeper.core import maglev

    by_name = {server.name: server for server in servers}
    if len(by_name) != len(servers):
        raise ValueError("duplicate real server passed to build_table")
    table_slots = size or service.table_size or maglev.table_size_for(len(servers))
    names = maglev.build_stable_table(
        {s.name: s.weight for s in servers}, dict(service.configured_weights), table_slots
    )
    return tuple(by_name[name] for name in names)


def lookup_table(virtual_server: VirtualServer) -> tuple[RealServer, ...]:
    """build_table() over the servers that take new flows, at the stable table size."""
    return build_table(
        virtual_server.service,
        forwarding_servers(virtual_server),
        size=table_size(virtual_server),
    )


# ---- diff: desired state -> ordered operations (the IPVS data plane executes these) --------------


# Operations of one shape share a base that defines their fields once; a base is never an
# operation itself, so a data plane matching by class stays exact.


@record
class ServiceOperation:
    """An operation on the virtual service `service`."""

    service: VirtualService


class AddService(ServiceOperation):
    """Adds the service, with no destination yet."""


class RemoveService(ServiceOperation):
    """Removes the service and, in the kernel, every destination under it."""


@record
class UpdateService:
    """Same key, different scheduler / flags / persistence."""

    old: VirtualService
    new: VirtualService


@record
class DestinationOperation(ServiceOperation):
    """An operation on the destination `server` of `service`."""

    server: RealServer


class RemoveDestination(DestinationOperation):
    """Removes the destination from the service."""


@record
class DestinationPlacement(DestinationOperation):
    """A destination the kernel holds with `server.weight`, forwarded by `method`."""

    method: ForwardingMethod


class AddDestination(DestinationPlacement):
    """Adds the destination."""


class UpdateDestination(DestinationPlacement):
    """Sets the destination's weight and forwarding method."""


Operation = (
    AddService
    | UpdateService
    | RemoveService
    | AddDestination
    | UpdateDestination
    | RemoveDestination
)


def _index(state: Iterable[VirtualServer]) -> dict[ServiceKey, VirtualServer]:
    indexed: dict[ServiceKey, VirtualServer] = {}
    for virtual_server in state:
        key = virtual_server.service.key
        if key in indexed:
            raise ValueError(f"duplicate virtual service {key}")
        indexed[key] = virtual_server
    return indexed


def _service_settings_differ(old: VirtualService, new: VirtualService) -> bool:
    # table_size and hash_seed only matter to the nftables data plane.
    return (
        old.scheduler != new.scheduler
        or old.scheduler_flags != new.scheduler_flags
        or old.persistence_timeout != new.persistence_timeout
    )


def diff(old: Iterable[VirtualServer], new: Iterable[VirtualServer]) -> list[Operation]:
    """Operations that turn the kernel state `old` into `new`, in a safe order.

    Order: services that disappear are removed first (their destinations go with them); then,
    service by service in key order, the service is added or updated, destinations are added and
    updated *before* stale ones are removed, so a live service never passes through an empty pool.
    A change of forwarding method re-adds the destination under the new method.
    """
    before = _index(old)
    after = _index(new)
    operations: list[Operation] = []
    for key in sorted(before.keys() - after.keys(), key=service_sort_key):
        operations.append(RemoveService(service=before[key].service))
    for key in sorted(after.keys(), key=service_sort_key):
        wanted = after[key]
        service = wanted.service
        previous = before.get(key)
        if previous is None:
            operations.append(AddService(service=service))
            current: dict[tuple[str, int], RealServer] = {}
        else:
            if _service_settings_differ(previous.service, service):
                operations.append(UpdateService(old=previous.service, new=service))
            current = {s.key: s for s in destinations(previous)}
        method_changed = previous is not None and previous.service.method != service.method
        desired = {s.key: s for s in destinations(wanted)}
        for server_key, server in desired.items():
            existing = current.get(server_key)
            if existing is None:
                operations.append(
                    AddDestination(service=service, server=server, method=service.method)
                )
            elif existing.weight != server.weight or method_changed:
                operations.append(
                    UpdateDestination(service=service, server=server, method=service.method)
                )
        for server_key in sorted(current.keys() - desired.keys(), key=_sort_key):
            operations.append(RemoveDestination(service=service, server=current[server_key]))
    return operations


def _sort_key(key: tuple[str, int]) -> tuple[int, int, int]:
    address = ipaddress.ip_address(key[0])
    return (address.version, int(address), key[1])


def service_sort_key(key: ServiceKey) -> tuple[int, int, int, str]:
    if key.address is None:
        return (0, key.fwmark or 0, 0, key.protocol.value)
    address = ipaddress.ip_address(key.address)
    return (address.version, int(address), key.port or 0, key.protocol.value)
