"""The nftables load-balancer data plane: LVS-DR in the netdev family, LVS-NAT in ip / ip6.

Owns: turning the desired virtual servers into one nft script and loading it as ONE transaction
(`nft -f -`), the DR flow tables and which real servers keep their pinned flows, and finding the
link-layer facts DR needs (server-side device, its MAC, each real server's MAC) through an
injectable `LinkLayer`. Must never: choose real servers for new flows itself (the Maglev table
comes from vipkeeper.core.lb), or load a ruleset in more than one transaction -- every change is
a single batch, which the kernel commits atomically, so traffic sees either the old ruleset or
the new one, never an empty one.

How a packet is steered. The kernel computes `jhash <flow key> mod M seed S`, M being the Maglev
table size, and looks the bucket up in a map built from the Maglev table:
- DR: netdev ingress hook on the interface that receives VIP traffic; the map gives a verdict
  `goto <per real server chain>`, which sets the Ethernet source to the director's server-side
  MAC and the destination to the real server's MAC and `fwd`s the frame out of the server-side
  interface. The IP header is untouched: the real server sees destination = VIP and answers the
  client directly. The netdev hook sits below connection tracking, so the data plane keeps its
  own: a flow table per service (`flows_*`, a dynamic nft map from the flow key to the token of
  the real server the flow was sent to). A packet whose flow has an entry whose token has a
  chain (`vsN_pinned`: token -> chain) goes to that chain before any hashing; an entry whose
  token has none is deleted; then the packet is hashed. Every real server's chain writes its
  token into the flow's entry (a new entry, or a refresh of the same one). So an established
  flow keeps its real server when a reload or a health change rebuilds the Maglev table (a
  server added, removed or reweighted), as IPVS keeps a connection on its destination, and only
  new flows follow the new table.
- The flow key is the hash key: rr / wrr / lc / wlc hash and pin the 4-tuple, sh / mh the source
  address (plus the source port with the `port` flag), persistence_timeout > 0 the source
  address only (client affinity). A per-packet `numgen inc` would send the packets of one TCP
  connection to different servers.
- Flow table entries expire FLOW_TIMEOUTS after a flow's last packet: IPVS's defaults for an
  established TCP connection (900 s) and for UDP (300 s), or persistence_timeout when longer
  (IPVS's persistence template). Without TCP state tracking, a closed connection's entry
  lingers for the timeout too: FLOW_TABLE_SIZE bounds the table, and a flow that finds it full
  is forwarded by the hash alone (the update is a rule of its own, so a full table never drops
  a packet). The tables live in the netdev table across applies: the batch flushes and rebuilds
  chains and Maglev maps around them, and only a service's removal or a change of its flow key
  or timeout deletes its flow table. A backend's first apply (the daemon starting) rebuilds the
  netdev table whole: it has no tokens for entries an earlier process left.
- Which servers keep their pinned flows (a token with a chain): every server taking new flows; a
  server at configured weight 0 (quiesced, as IPVS weight 0); and a server removed from the
  configuration, which drains like an IPVS destination removed with expire_nodest_conn=0, until
  its flows' timeout has passed since the removal. A configured server that left the pool
  (health check down, inhibit_on_failure, quorum lost) loses its chain and token: a dead server
  cannot answer, so each of its flows is hashed to a live server at its next packet and pinned
  there. When it comes back it gets a new token, so an idle flow's entry naming the old token
  never pulls that flow back to it.
  A real server's token is its identity in the flow tables, not its position in the
  configuration, so adding or removing another server changes nothing for its flows.
- NAT: ip / ip6 family, nat prerouting: `dnat to jhash ... map { bucket : rs_ip . rs_port }`.
  Conntrack remembers each connection's choice and reverses it on the reply, which must come back
  through the director: the real servers' default route points at the director, so no masquerade
  is needed (the servers see the client's address). The director needs ip_forward = 1.
- Same configuration + same seed on two directors = same table and same jhash, so a flow keeps
  its real server when the VIP moves: established connections survive failover with no state
  sync (for NAT, conntrack picks the mid-stream flow up again and hashes it the same way; for
  DR, the new Master's hash agrees with the old Master's unless the table changed while the
  flow ran, because flow tables are not synchronised).
- A service with no server that can take traffic drops its packets (the drop rule after the map)
  rather than letting the director's own stack answer them with a reset.
- DR rules match only frames addressed to this host (`meta pkttype host`). The netdev hook runs
  before the IP layer discards frames meant for another MAC, and a switch floods frames for an
  unknown MAC to every port: without the check a Backup director would forward its own copy of
  the Master's traffic (duplicates at the real server). They also require the VIP to be a local
  address (`fib daddr type local`), as IPVS does: a director that lost the VIP never forwards
  frames a client still sends to its MAC from a stale ARP entry, so such a client fails fast
  and follows the Master's gratuitous ARP instead of being served by the wrong director.
- Limits: fwmark services need NAT mode here (a mark set in mangle does not exist yet at netdev
  ingress); DR ignores the real server's port (the frame is forwarded unchanged).
"""

from __future__ import annotations

import contextlib
import ipaddress
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
    Protocol,
    RealServer,
    Scheduler,
    SchedulerFlag,
    ServiceKey,
    VirtualServer,
    VirtualService,
    build_table,
    destinations,
    forwarding_servers,
    service_sort_key,
    table_size,
)
from vipkeeper.io.scripts import CommandFailed, run_command

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "vipkeeper"
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


# ---- the plan: everything the script needs, resolved ---------------------------------------------

# How long a DR flow stays pinned to its real server after its last packet: IPVS's default
# timeouts for an established TCP connection and for UDP (ipvsadm --set 900 120 300).
FLOW_TIMEOUTS = {Protocol.TCP: 900, Protocol.UDP: 300}
# Most flows one service's flow table pins; beyond it new flows follow the hash alone.
FLOW_TABLE_SIZE = 262144


@dataclass(frozen=True, kw_only=True)
class DrTarget:
    server: RealServer
    device: str  # server-side interface the frame leaves by
    director_mac: str
    server_mac: str


@dataclass(frozen=True, kw_only=True)
class DrServicePlan:
    """`targets`: every real server with a chain -- those taking new flows first (the buckets
    index them), then those that only keep their pinned flows (quiesced or draining)."""

    service: VirtualService
    ingress_device: str
    table_size: int
    targets: tuple[DrTarget, ...]
    buckets: tuple[int, ...]  # bucket i -> index into targets; empty: no server
    tokens: tuple[int, ...]  # target i's flow token (see NftablesBackend._tokens)


@dataclass(frozen=True, kw_only=True)
class NatServicePlan:
    service: VirtualService
    table_size: int
    buckets: tuple[RealServer, ...]  # bucket i -> real server; empty: no server


@dataclass(frozen=True)
class DrObjects:
    """What a rendered netdev table holds, by name: rebuilt on every apply (`chains`, `maps`),
    and kept across applies while their declaration is unchanged (`base_chains`, `flow_tables`:
    name -> declaration)."""

    chains: tuple[str, ...] = ()
    maps: tuple[str, ...] = ()
    base_chains: Mapping[str, str] = field(default_factory=dict)
    flow_tables: Mapping[str, str] = field(default_factory=dict)


def flow_hash_key(service: VirtualService) -> str:
    """The nft concatenation the service hashes (see the module docstring for the why)."""
    family = _family(service)
    l4 = _l4(service)
    source_only = service.persistence_timeout > 0 or service.scheduler in (
        Scheduler.SOURCE_HASH,
        Scheduler.MAGLEV_HASH,
    )
    if source_only:
        if SchedulerFlag.PORT in service.scheduler_flags and service.persistence_timeout == 0:
            return f"{family} saddr . {l4} sport"
        return f"{family} saddr"
    return f"{family} saddr . {l4} sport . {family} daddr . {l4} dport"


def flow_timeout(service: VirtualService) -> int:
    """Seconds a flow stays pinned after its last packet (see the module docstring)."""
    return max(FLOW_TIMEOUTS[service.protocol], service.persistence_timeout)


def flow_table_name(service: VirtualService) -> str:
    """The service's flow table: named after the service, so it is the same across applies."""
    assert service.address is not None
    address = ipaddress.ip_address(service.address)
    spelled = str(address).replace(".", "_") if address.version == 4 else address.packed.hex()
    return f"flows_{service.protocol.value.lower()}_{spelled}_{service.port}"


# nft 1.0.6 aborts on a rule that updates or deletes a map entry whose key is wider than one
# IPv6 address, so an IPv6 flow key of several fields enters the flow table as its 32-bit jhash.
# Two flows sharing an entry share a real server that can take them: a collision never breaks
# a flow.
_FLOW_KEY_HASH = 2**32 - 1


def flow_table_key(service: VirtualService) -> str:
    """What the flow table is keyed by: the flow hash key, or its jhash (see _FLOW_KEY_HASH)."""
    key = flow_hash_key(service)
    if service.ip_version == 6 and " . " in key:
        return f"jhash {key} mod {_FLOW_KEY_HASH} seed {service.hash_seed:#010x}"
    return key


def _flow_table(service: VirtualService) -> str:
    key = flow_table_key(service)
    typeof = "numgen inc mod 2" if key.startswith("jhash ") else key
    return (
        f"typeof {typeof} : ether saddr; flags dynamic,timeout;"
        f" timeout {flow_timeout(service)}s; size {FLOW_TABLE_SIZE};"
    )


def _family(service: VirtualService) -> str:
    return "ip6" if service.ip_version == 6 else "ip"


def _l4(service: VirtualService) -> str:
    if service.fwmark is not None:
        return "th"  # any transport header with ports (tcp, udp, sctp, dccp)
    return "tcp" if service.protocol is Protocol.TCP else "udp"


# Only the director that holds the VIP forwards, and only frames addressed to it: see the module
# docstring.
_DR_GUARD = "meta pkttype host fib daddr type local"


def _match(service: VirtualService) -> str:
    if service.fwmark is not None:
        return f"meta mark {service.fwmark:#x}"
    return f"{_family(service)} daddr {service.address} {_l4(service)} dport {service.port}"


def _hash(service: VirtualService, size: int) -> str:
    return f"jhash {flow_hash_key(service)} mod {size} seed {service.hash_seed:#010x}"


def _quote(text: str) -> str:
    if '"' in text or "\n" in text:
        raise ValueError(f"refusing to put {text!r} in an nft script")
    return f'"{text}"'


def _chain_safe(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", device)


def _service_label(service: VirtualService) -> str:
    if service.fwmark is not None:
        return f"fwmark {service.fwmark}"
    return f"{service.protocol.value} {service.address}:{service.port}"


def _token(token: int) -> str:
    """A flow token spelled as the Ethernet address the flow table stores."""
    return ":".join(f"{byte:02x}" for byte in token.to_bytes(6, "big"))


def _base_chain(device: str) -> str:
    return f"type filter hook ingress device {_quote(device)} priority 0; policy accept;"


def dr_objects(plans: Sequence[DrServicePlan]) -> DrObjects:
    """The names `render_ruleset` gives the DR plans' chains and maps."""
    chains: list[str] = []
    maps: list[str] = []
    for number, plan in enumerate(plans):
        chains += [f"vs{number}_rs{index}" for index in range(len(plan.targets))]
        if plan.targets:
            maps.append(f"vs{number}_pinned")
        if plan.buckets:
            maps.append(f"vs{number}_buckets")
    return DrObjects(
        chains=tuple(chains),
        maps=tuple(maps),
        base_chains={
            f"ingress_{_chain_safe(p.ingress_device)}": _base_chain(p.ingress_device) for p in plans
        },
        flow_tables={flow_table_name(p.service): _flow_table(p.service) for p in plans},
    )


def render_ruleset(
    *,
    dr: Sequence[DrServicePlan],
    nat: Sequence[NatServicePlan],
    table: str = DEFAULT_TABLE,
    applied: DrObjects | None = None,
) -> str:
    """One nft script that replaces every table this backend owns, to be loaded in one batch.

    `table netdev T` before `delete table netdev T` makes the delete valid whether or not the
    table exists; the new definition follows in the same batch. With `applied` (what the last
    script put in the netdev table, as `dr_objects` names it) the netdev table is kept instead:
    its rules flushed, its chains and Maglev maps deleted and rebuilt, its flow tables and
    ingress chains kept where their declaration is unchanged, so pinned flows survive.
    """
    nat_table = f"{table}_nat"
    lines: list[str] = []
    if applied is None or not dr:
        lines += [f"table netdev {table}", f"delete table netdev {table}"]
    for family in ("ip", "ip6"):
        lines += [f"table {family} {nat_table}", f"delete table {family} {nat_table}"]
    if dr:
        wanted = dr_objects(dr)
        kept = DrObjects()
        if applied is not None:
            kept = DrObjects(
                base_chains=_unchanged(applied.base_chains, wanted.base_chains),
                flow_tables=_unchanged(applied.flow_tables, wanted.flow_tables),
            )
            lines.append(f"flush table netdev {table}")
            lines += [f"delete map netdev {table} {name}" for name in applied.maps]
            lines += [f"delete chain netdev {table} {name}" for name in applied.chains]
            lines += [
                f"delete chain netdev {table} {name}"
                for name in applied.base_chains
                if name not in kept.base_chains
            ]
            lines += [
                f"delete map netdev {table} {name}"
                for name in applied.flow_tables
                if name not in kept.flow_tables
            ]
        lines.extend(_render_dr(dr, table, kept))
    for family in ("ip", "ip6"):
        plans = [p for p in nat if _family(p.service) == family]
        if plans:
            lines.extend(_render_nat(plans, family, nat_table))
    return "\n".join(lines) + "\n"


def _unchanged(applied: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    return {name: text for name, text in applied.items() if wanted.get(name) == text}


def _render_dr(plans: Sequence[DrServicePlan], table: str, kept: DrObjects) -> list[str]:
    lines = [f"table netdev {table} {{"]
    for name, declaration in dr_objects(plans).flow_tables.items():
        if name not in kept.flow_tables:
            lines.append(f"  map {name} {{ {declaration} }}")
    rules_by_device: dict[str, list[str]] = {}
    for number, plan in enumerate(plans):
        prefix = f"vs{number}"
        service = plan.service
        label = _quote(_service_label(service))
        key = flow_table_key(service)
        flows = flow_table_name(service)
        pinned: list[str] = []
        for index, (target, token) in enumerate(zip(plan.targets, plan.tokens, strict=True)):
            chain = f"{prefix}_rs{index}"
            pinned.append(f"{_token(token)} : goto {chain}")
            name = _quote(target.server.name)
            lines += [
                # The Ethernet source carries the token until the rewrite. The update pins a
                # new flow and refreshes a pinned one; the forwarding is a rule of its own,
                # because on a full flow table the update ends its rule.
                f"  chain {chain} {{",
                f"    ether saddr set {_token(token)} update @{flows} {{ {key} : ether saddr }}"
                f" comment {name}",
                f"    counter ether saddr set {target.director_mac}"
                f" ether daddr set {target.server_mac} fwd to {_quote(target.device)}"
                f" comment {name}",
                "  }",
            ]
        rules = rules_by_device.setdefault(plan.ingress_device, [])
        if pinned:
            lines += [
                f"  map {prefix}_pinned {{",
                "    typeof ether saddr : verdict",
                f"    elements = {{ {', '.join(pinned)} }}",
                "  }",
            ]
            rules += [
                # A flow in the table goes to its server's chain ...
                f"    {_DR_GUARD} {_match(service)} ether saddr set {key} map @{flows}"
                f" ether saddr vmap @{prefix}_pinned comment {label}",
                # ... one whose token has no chain any more (its server left the pool) loses
                # its entry (the update cannot overwrite it) and is hashed and pinned afresh.
                f"    {_DR_GUARD} {_match(service)} delete @{flows} {{ {key} : ether saddr }}"
                f" comment {label}",
            ]
        if plan.buckets:
            elements = ", ".join(
                f"{bucket} : goto {prefix}_rs{index}" for bucket, index in enumerate(plan.buckets)
            )
            # typeof numgen: a 32-bit integer key, the type jhash ... mod M produces
            lines += [
                f"  map {prefix}_buckets {{",
                "    typeof numgen inc mod 2 : verdict",
                f"    elements = {{ {elements} }}",
                "  }",
            ]
            rules.append(
                f"    {_DR_GUARD} {_match(service)} {_hash(service, plan.table_size)}"
                f" vmap @{prefix}_buckets comment {label}"
            )
        rules.append(f"    {_DR_GUARD} {_match(service)} counter drop comment {label}")
    for device, rules in sorted(rules_by_device.items()):
        lines += [
            f"  chain ingress_{_chain_safe(device)} {{",
            f"    {_base_chain(device)}",
            *rules,
            "  }",
        ]
    lines.append("}")
    return lines


def _render_nat(plans: Sequence[NatServicePlan], family: str, table: str) -> list[str]:
    lines = [f"table {family} {table} {{"]
    rules: list[str] = []
    for number, plan in enumerate(plans):
        prefix = f"vs{number}"
        service = plan.service
        label = _quote(_service_label(service))
        with_port = service.fwmark is None
        if plan.buckets:
            if with_port:
                value_type = f"{family} daddr . tcp dport"
                elements = ", ".join(
                    f"{bucket} : {server.address} . {server.port}"
                    for bucket, server in enumerate(plan.buckets)
                )
                target = f"dnat {family} addr . port to"
            else:
                value_type = f"{family} daddr"
                elements = ", ".join(
                    f"{bucket} : {server.address}" for bucket, server in enumerate(plan.buckets)
                )
                target = f"dnat {family} to"
            lines += [
                f"  map {prefix}_buckets {{",
                f"    typeof numgen inc mod 2 : {value_type}",
                f"    elements = {{ {elements} }}",
                "  }",
            ]
            rules.append(
                f"    {_match(service)} counter {target}"
                f" {_hash(service, plan.table_size)} map @{prefix}_buckets comment {label}"
            )
        rules.append(f"    {_match(service)} counter drop comment {label}")
    lines += [
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        *rules,
        "  }",
        "}",
    ]
    return lines


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
    """LoadBalancerBackend on nftables (see the module docstring).

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
                    f"{_service_label(service)}: the nftables backend does DR for address:port "
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
        self._labels = {_service_label(service): service.key for service in services}

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
