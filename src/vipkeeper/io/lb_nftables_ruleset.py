"""The nft script of the nftables load-balancer data plane: LVS-DR in netdev, LVS-NAT in ip / ip6.

Owns: rendering resolved plans into ONE nft script (tables, flow tables, Maglev maps, chains) and
the flow key, hash and flow-table expressions; no I/O (vipkeeper.io.lb_nftables plans and loads).

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

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vipkeeper.core.lb import (
    Protocol,
    RealServer,
    Scheduler,
    SchedulerFlag,
    VirtualService,
)
from vipkeeper.core.records import record

DEFAULT_TABLE = "vipkeeper"


# ---- the plan: everything the script needs, resolved ---------------------------------------------

# How long a DR flow stays pinned to its real server after its last packet: IPVS's default
# timeouts for an established TCP connection and for UDP (ipvsadm --set 900 120 300).
FLOW_TIMEOUTS = {Protocol.TCP: 900, Protocol.UDP: 300}
# Most flows one service's flow table pins; beyond it new flows follow the hash alone.
FLOW_TABLE_SIZE = 262144


@record
class DrTarget:
    server: RealServer
    device: str  # server-side interface the frame leaves by
    director_mac: str
    server_mac: str


@record
class DrServicePlan:
    """`targets`: every real server with a chain -- those taking new flows first (the buckets
    index them), then those that only keep their pinned flows (quiesced or draining)."""

    service: VirtualService
    ingress_device: str
    table_size: int
    targets: tuple[DrTarget, ...]
    buckets: tuple[int, ...]  # bucket i -> index into targets; empty: no server
    tokens: tuple[int, ...]  # target i's flow token (see lb_nftables.NftablesBackend._tokens)


@record
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


def service_label(service: VirtualService) -> str:
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
        label = _quote(service_label(service))
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
        label = _quote(service_label(service))
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
