"""The nftables load-balancer backend: plans the desired virtual servers and loads the ruleset.

Owns: the link-layer facts DR needs (`LinkLayer`), which real servers keep pinned flows (tokens,
draining), the one-transaction load (`nft -f -`) with its fallback, and the counters read back.

Must never: choose real servers for new flows itself (the Maglev table comes from
vipkeeper.core.lb), or load a ruleset in more than one transaction -- every change is a single
batch, which the kernel commits atomically, so traffic sees either the old ruleset or the new
one, never an empty one. The script, and how a packet is steered: vipkeeper.io.lb_nftables_ruleset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

from vipkeeper.core.lb import (
    ForwardingMethod,
    RealServer,
    ServiceKey,
    VirtualServer,
    build_table,
    destinations,
    forwarding_servers,
    service_sort_key,
    table_size,
)
from vipkeeper.io.lb_nftables_ruleset import (
    DEFAULT_TABLE,
    DrObjects,
    DrServicePlan,
    DrTarget,
    NatServicePlan,
    dr_objects,
    flow_timeout,
    render_ruleset,
    service_label,
)
from vipkeeper.io.scripts import CommandFailed, run_command

logger = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


Runner = Callable[[Sequence[str], str | None], Awaitable[str]]


# ---- link layer: where a real server is, and its MAC ---------------------------------------------


class LinkLayer(TypingProtocol):
    async def route_device(self, address: str) -> str:
        """The interface a packet to `address` leaves by; it must be on-link (DR)."""
        ...

    async def link_address(self, device: str) -> str:
        """The device's own MAC address."""
        ...

    async def neighbour_address(self, address: str, device: str) -> str | None:
        """The MAC of on-link `address` behind `device`, resolving it if needed; None if silent."""
        ...


class IpCommandLinkLayer:
    """LinkLayer from iproute2's JSON output; `prefix` runs it elsewhere (`ip netns exec NS`).

    An unknown neighbour is resolved by sending one ping out of the device: the kernel ARPs (or
    sends a neighbour solicitation) first, and the entry appears even if ICMP is filtered.
    """

    def __init__(self, *, prefix: Sequence[str] = (), runner: Runner = run_command) -> None:
        self._prefix = tuple(prefix)
        self._run = runner

    async def _ip_json(self, *args: str) -> list[dict[str, object]]:
        out = await self._run([*self._prefix, "ip", "-j", *args], None)
        parsed = json.loads(out) if out.strip() else []
        return [entry for entry in parsed if isinstance(entry, dict)]

    async def route_device(self, address: str) -> str:
        routes = await self._ip_json("route", "get", address)
        if not routes:
            raise LookupError(f"no route to real server {address}")
        route = routes[0]
        if route.get("gateway"):
            raise LookupError(
                f"real server {address} is behind gateway {route['gateway']}; "
                "LVS-DR needs it on a directly attached network"
            )
        return str(route["dev"])

    async def link_address(self, device: str) -> str:
        links = await self._ip_json("link", "show", "dev", device)
        if not links or "address" not in links[0]:
            raise LookupError(f"device {device} has no link-layer address")
        return str(links[0]["address"]).lower()

    async def _lookup(self, address: str, device: str) -> str | None:
        for entry in await self._ip_json("neigh", "show", "to", address, "dev", device):
            states = entry.get("state", [])
            lladdr = entry.get("lladdr")
            if lladdr and not (isinstance(states, list) and {"FAILED", "INCOMPLETE"} & set(states)):
                return str(lladdr).lower()
        return None

    async def neighbour_address(self, address: str, device: str) -> str | None:
        found = await self._lookup(address, device)
        if found is not None:
            return found
        ping = "ping6" if ":" in address else "ping"
        probe = [*self._prefix, ping, "-c", "1", "-W", "1", "-I", device, address]
        # no echo reply is fine: the neighbour entry is what we are after
        with contextlib.suppress(CommandFailed):
            await self._run(probe, None)
        return await self._lookup(address, device)


class StaticLinkLayer:
    """LinkLayer from fixed tables, for tests and for operators who pin MACs."""

    def __init__(
        self,
        *,
        devices: Mapping[str, str],
        device_macs: Mapping[str, str],
        neighbours: Mapping[str, str],
    ) -> None:
        self._devices = dict(devices)
        self._device_macs = dict(device_macs)
        self._neighbours = dict(neighbours)

    async def route_device(self, address: str) -> str:
        try:
            return self._devices[address]
        except KeyError:
            raise LookupError(f"no route to real server {address}") from None

    async def link_address(self, device: str) -> str:
        return self._device_macs[device]

    async def neighbour_address(self, address: str, device: str) -> str | None:
        return self._neighbours.get(address)


def _quiesced(virtual_server: VirtualServer) -> list[RealServer]:
    """Listed real servers at weight 0 that keep their pinned flows: those configured at weight
    0 (or not named in configured_weights). One at weight 0 with a positive configured weight
    left the pool on a health check (inhibit_on_failure): its flows move."""
    configured = dict(virtual_server.service.configured_weights)
    return [
        server
        for server in destinations(virtual_server)
        if server.weight == 0 and configured.get(server.name, 0) == 0
    ]


# ---- the backend ---------------------------------------------------------------------------------


@dataclass
class DataPlaneCounters:
    """`servers`: (service, real server name "address:port") -> (packets, bytes) forwarded (DR);
    `connections`: service -> connections forwarded (NAT)."""

    servers: dict[tuple[ServiceKey, str], tuple[int, int]] = field(default_factory=dict)
    connections: dict[ServiceKey, int] = field(default_factory=dict)


class NftablesBackend:
    """LoadBalancerBackend on nftables (see the module docstring and lb_nftables_ruleset's).

    `ingress_devices` maps each DR VIP to the interface its traffic arrives on (the VRRP
    instance's interface); `nft` is the command to run, e.g. ("ip", "netns", "exec", NS, "nft");
    `clock` (monotonic seconds) times the draining of removed real servers.
    """

    name = "nftables"

    def __init__(
        self,
        *,
        ingress_devices: Mapping[str, str],
        link_layer: LinkLayer | None = None,
        nft: Sequence[str] = ("nft",),
        table: str = DEFAULT_TABLE,
        runner: Runner = run_command,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ingress_devices = dict(ingress_devices)
        self._link_layer: LinkLayer = link_layer or IpCommandLinkLayer(runner=runner)
        self._nft = tuple(nft)
        self._table = table
        self._run = runner
        self._clock = clock
        self.applied_script: str | None = None
        self.unresolved: tuple[RealServer, ...] = ()
        # What the applied ruleset's names stand for, to read its counters back.
        self._dr_chains: dict[str, ServiceKey] = {}  # "vs0" -> service
        self._labels: dict[str, ServiceKey] = {}  # rule comment -> service
        # The netdev table as the last apply left it (None: rebuild it whole).
        self._dr_applied: DrObjects | None = None
        # Each DR service's targets in the applied ruleset, and the removed real servers that
        # still drain there: server key -> (target, monotonic time its draining ends).
        self._dr_targets: dict[ServiceKey, dict[tuple[str, int], DrTarget]] = {}
        self._draining: dict[ServiceKey, dict[tuple[str, int], tuple[DrTarget, float]]] = {}
        self._planned_draining: dict[ServiceKey, dict[tuple[str, int], tuple[DrTarget, float]]] = {}
        # Each target's flow token, what its pinned flows' entries hold: kept while the server
        # keeps a chain, so its flows stay pinned across applies; a server that lost its chain
        # (left the pool) comes back with a new one, so an entry naming the old token is
        # deleted at its flow's next packet instead of pulling the flow back to it.
        self._tokens: dict[tuple[ServiceKey, tuple[str, int]], int] = {}
        self._planned_tokens: dict[tuple[ServiceKey, tuple[str, int]], int] = {}
        self._last_token = 0

    def set_ingress_devices(self, ingress_devices: Mapping[str, str]) -> None:
        """A reload moved or added VIPs: the next apply uses these interfaces."""
        self._ingress_devices = dict(ingress_devices)

    async def plan(
        self, desired: Sequence[VirtualServer]
    ) -> tuple[list[DrServicePlan], list[NatServicePlan]]:
        dr: list[DrServicePlan] = []
        nat: list[NatServicePlan] = []
        unresolved: list[RealServer] = []
        self._planned_draining = {}
        self._planned_tokens = {}
        for virtual_server in sorted(desired, key=lambda v: service_sort_key(v.service.key)):
            service = virtual_server.service
            size = table_size(virtual_server)
            servers = forwarding_servers(virtual_server)
            if service.method is ForwardingMethod.NAT:
                nat.append(
                    NatServicePlan(
                        service=service,
                        table_size=size,
                        buckets=build_table(service, servers, size=size),
                    )
                )
                continue
            if service.fwmark is not None:
                raise ValueError(
                    f"{service_label(service)}: the nftables backend does DR for address:port "
                    "services only (no fwmark exists yet at netdev ingress); use NAT or IPVS"
                )
            assert service.address is not None
            ingress = self._ingress_devices.get(service.address)
            if ingress is None:
                raise ValueError(f"no ingress interface known for VIP {service.address}")
            targets: list[DrTarget] = []
            for server in servers:
                target = await self._resolve(server)
                if target is None:
                    unresolved.append(server)
                else:
                    targets.append(target)
            table = build_table(service, [t.server for t in targets], size=size)
            index_of = {target.server.key: index for index, target in enumerate(targets)}
            buckets = tuple(index_of[server.key] for server in table)
            for server in _quiesced(virtual_server):
                target = await self._resolve(server)
                if target is not None:
                    targets.append(target)
            targets += self._drain(virtual_server, {t.server.key for t in targets})
            tokens = tuple(self._token_of(service.key, t.server.key) for t in targets)
            dr.append(
                DrServicePlan(
                    service=service,
                    ingress_device=ingress,
                    table_size=size,
                    targets=tuple(targets),
                    buckets=buckets,
                    tokens=tokens,
                )
            )
        self.unresolved = tuple(unresolved)
        return dr, nat

    def _token_of(self, service: ServiceKey, server: tuple[str, int]) -> int:
        token = self._tokens.get((service, server))
        if token is None:
            self._last_token += 1
            token = self._last_token
        self._planned_tokens[(service, server)] = token
        return token

    def _drain(self, virtual_server: VirtualServer, placed: set[tuple[str, int]]) -> list[DrTarget]:
        """The targets of real servers removed from the configuration whose pinned flows are
        still being forwarded: newly removed ones start draining now, for the flow timeout."""
        service = virtual_server.service
        configured = {name for name, _ in service.configured_weights}
        listed = {server.key for server in destinations(virtual_server)}
        now = self._clock()
        draining = dict(self._draining.get(service.key, {}))
        for key, target in self._dr_targets.get(service.key, {}).items():
            if key not in draining:
                draining[key] = (target, now + flow_timeout(service))
        kept = {
            key: (target, until)
            for key, (target, until) in draining.items()
            if until > now
            and key not in placed
            and key not in listed
            and target.server.name not in configured
        }
        self._planned_draining[service.key] = kept
        return [target for target, _ in kept.values()]

    async def _resolve(self, server: RealServer) -> DrTarget | None:
        device = await self._link_layer.route_device(server.address)
        director_mac = await self._link_layer.link_address(device)
        server_mac = await self._link_layer.neighbour_address(server.address, device)
        if server_mac is None or not _MAC.match(server_mac):
            logger.warning(
                "real server %s: no MAC address on %s; it takes no flows", server.name, device
            )
            return None
        return DrTarget(
            server=server, device=device, director_mac=director_mac, server_mac=server_mac
        )

    async def apply(self, desired: Sequence[VirtualServer]) -> None:
        dr, nat = await self.plan(desired)
        script = render_ruleset(dr=dr, nat=nat, table=self._table, applied=self._dr_applied)
        try:
            await self._run([*self._nft, "-f", "-"], script)
        except CommandFailed as error:
            if self._dr_applied is None:
                raise
            # The netdev table is not what the last apply left (someone changed it): rebuild
            # it whole, losing its pinned flows rather than the update.
            logger.warning("nft: keeping the flow tables failed (%s); rebuilding them", error)
            script = render_ruleset(dr=dr, nat=nat, table=self._table)
            await self._run([*self._nft, "-f", "-"], script)
        self.applied_script = script
        self._dr_applied = dr_objects(dr) if dr else None
        self._dr_targets = {
            plan.service.key: {target.server.key: target for target in plan.targets} for plan in dr
        }
        self._draining = self._planned_draining
        self._tokens = self._planned_tokens
        self._dr_chains = {f"vs{number}": plan.service.key for number, plan in enumerate(dr)}
        services = [plan.service for plan in dr] + [plan.service for plan in nat]
        self._labels = {service_label(service): service.key for service in services}

    async def counters(self) -> DataPlaneCounters:
        """The applied ruleset's counters: packets and bytes forwarded to each DR real server,
        connections DNATed for each NAT service (the nat hook sees a connection's first packet
        only). They count from the last apply, which rebuilds the chains holding them."""
        result = DataPlaneCounters()
        if self.applied_script is None:
            return result
        tables = [("netdev", self._table)] if self._dr_chains else []
        nat_services = set(self._labels.values()) - set(self._dr_chains.values())
        if nat_services:
            tables += [("ip", f"{self._table}_nat"), ("ip6", f"{self._table}_nat")]
        for family, table in tables:
            try:
                out = await self._run([*self._nft, "-j", "list", "table", family, table], None)
            except Exception as exc:  # the table of an unused family is absent
                logger.debug("nft list table %s %s: %s", family, table, exc)
                continue
            for item in json.loads(out).get("nftables", []):
                self._count(item.get("rule"), result)
        return result

    def _count(self, rule: dict[str, Any] | None, result: DataPlaneCounters) -> None:
        if not rule:
            return
        counter = next((e["counter"] for e in rule.get("expr", []) if "counter" in e), None)
        if counter is None:
            return
        chain, comment = str(rule.get("chain", "")), str(rule.get("comment", ""))
        prefix, separator, _ = chain.partition("_rs")
        if separator and prefix in self._dr_chains:
            key = (self._dr_chains[prefix], comment)
            result.servers[key] = (int(counter["packets"]), int(counter["bytes"]))
        elif chain == "prerouting" and any("dnat" in e for e in rule.get("expr", [])):
            service = self._labels.get(comment)
            if service is not None:
                result.connections[service] = int(counter["packets"])

    async def clear(self) -> None:
        await self._run([*self._nft, "-f", "-"], render_ruleset(dr=(), nat=(), table=self._table))
        self.applied_script = None
        self._dr_applied = None
        self._dr_targets = {}
        self._draining = {}
        self._tokens = {}
