"""LVS-DR on the nftables backend, in namespaces: real HTTP servers behind a VIP.

Proves: flows spread over both real servers; a real server receives packets addressed to the VIP
(only the Ethernet header was rewritten); replies go from the real server straight to the client,
never through the director; a new atomic ruleset (reweight, removal) leaves an in-flight
keep-alive connection to a remaining server working; two directors with the same configuration
send the same flow to the same real server, so connections survive moving the VIP.

The flow table: keep-alive connections keep their real server when a server added resizes the
Maglev table and when one removed from the configuration drains (it takes no new flow); flows
pinned to a server out of the pool on its health check move to a live one; a full flow table
costs no packet; an IPv6 service's flow table loads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vipkeeper.core import maglev
from vipkeeper.core.lb import RealServer, VirtualServer, VirtualService
from vipkeeper.io import lb_nftables_ruleset
from vipkeeper.io.lb_nftables import (
    IpCommandLinkLayer,
    NftablesBackend,
    StaticLinkLayer,
)
from vipkeeper.io.lb_nftables_ruleset import flow_table_name
from vipkeeper.testing.lbnet import VIP, Client, LbNet

pytestmark = pytest.mark.netns

SERVICE = VirtualService(address=VIP, port=80, hash_seed=0x5EED)
RS = {
    "rs1": RealServer(address="192.168.0.54", port=80),
    "rs2": RealServer(address="192.168.0.55", port=80),
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LbNet]:
    with LbNet(tmp_path) as built:
        yield built


def backend(net: LbNet, director: str) -> NftablesBackend:
    prefix = ("ip", "netns", "exec", net.ns(director))
    return NftablesBackend(
        ingress_devices={VIP: "fe0"},
        link_layer=IpCommandLinkLayer(prefix=prefix),
        nft=(*prefix, "nft"),
    )


def apply(
    net: LbNet, director: str, *servers: RealServer, service: VirtualService = SERVICE
) -> NftablesBackend:
    """A new backend (nothing applied before it) that applies `servers`."""
    nft = backend(net, director)
    asyncio.run(nft.apply([VirtualServer(service=service, real_servers=servers)]))
    return nft


def spread(net: LbNet, requests: int = 24) -> dict[str, int]:
    client = net.client()
    seen: dict[str, int] = {}
    for _ in range(requests):
        body = client.get()
        seen[body] = seen.get(body, 0) + 1
    return seen


# The flow hash places each connection, so a handful can all land on one server by chance (8
# on two servers: 1 in 128); opening up to this many makes that 1 in 2**63 for a working spread.
SPREAD_LIMIT = 64


def open_connections(client: Client, count: int) -> dict[int, str]:
    """Open at least `count` keep-alive connections to the VIP, and more (up to SPREAD_LIMIT)
    until every real server has answered one: which server answered each."""
    owners: dict[int, str] = {}
    conn = 0
    while conn < count or (set(owners.values()) != set(RS) and conn < SPREAD_LIMIT):
        client.open(conn)
        owners[conn] = client.get_on(conn)
        conn += 1
    return owners


def test_dr_spreads_flows_and_real_servers_receive_packets_addressed_to_the_vip(net: LbNet):
    for name in RS:
        net.count_ingress(name, "srv0", {"to_vip": f"ip daddr {VIP} tcp dport 80"})
    apply(net, "d1", *RS.values())
    net.add_vip("d1")

    seen = spread(net)

    assert set(seen) == {"rs1", "rs2"}
    for name in RS:
        # arrived on the servers' network with the VIP still the destination address
        assert net.counter(name, "netdev", "probe", "to_vip") > 0


def test_dr_replies_go_from_the_real_server_to_the_client_not_through_the_director(net: LbNet):
    net.count_dr_paths(("d1",))
    apply(net, "d1", *RS.values())
    net.add_vip("d1")

    seen = spread(net)

    assert set(seen) == {"rs1", "rs2"}
    assert net.counter("cli", "netdev", "probe", "from_rs1") > 0
    assert net.counter("cli", "netdev", "probe", "from_rs2") > 0
    assert net.counter("d1", "netdev", "probe_fe0", "replies") == 0
    assert net.counter("d1", "netdev", "probe_srv0", "replies") == 0
    # the director did forward the requests: its per-real-server chains counted them
    forwarded = sum(
        net.chain_packets("d1", "netdev", "vipkeeper", chain) for chain in ("vs0_rs0", "vs0_rs1")
    )
    assert forwarded > 0


def test_reweight_and_removal_keep_in_flight_keepalive_connections_to_remaining_server(
    net: LbNet,
):
    # Each apply from a fresh backend rebuilds the table whole (no pinned flow survives): the
    # Maglev hash alone keeps the remaining server's flows where they are.
    apply(net, "d1", *RS.values())
    net.add_vip("d1")
    client = net.client()
    owners = open_connections(client, 8)
    assert set(owners.values()) == {"rs1", "rs2"}
    keep = owners[0]
    leave = "rs2" if keep == "rs1" else "rs1"
    kept_conns = [conn for conn, owner in owners.items() if owner == keep]

    # inhibit the other server (weight 0), then remove it: each a new atomic ruleset
    inhibited = RealServer(address=RS[leave].address, port=80, weight=0)
    apply(net, "d1", RS[keep], inhibited)
    for conn in kept_conns:
        assert client.get_on(conn) == keep
    apply(net, "d1", RS[keep])
    for conn in kept_conns:
        assert client.get_on(conn) == keep
    assert set(spread(net, 8)) == {keep}

    # and it comes back with more weight: new flows reach it again
    apply(net, "d1", RS[keep], RealServer(address=RS[leave].address, port=80, weight=3))
    assert leave in spread(net)


# -- the flow table: established flows keep their real server while the table changes --------

RS3 = RealServer(address="192.168.0.56", port=80)  # LbNet(sorry=True)'s third server


def configured(*servers: RealServer) -> VirtualService:
    """SERVICE as the configuration layer builds it for these real servers."""
    return dataclasses.replace(
        SERVICE,
        configured_weights=tuple(sorted((s.name, s.weight) for s in servers)),
        table_size=maglev.table_size_for(len(servers)),
    )


def elements(net: LbNet, director: str, name: str) -> list[Any]:
    out = net.run(director, "nft", "-j", "list", "map", "netdev", "vipkeeper", name)
    (table,) = [item["map"] for item in json.loads(out)["nftables"] if "map" in item]
    return list(table.get("elem", []))


def flows_to(net: LbNet, director: str, server: str) -> int:
    """Entries of the service's flow table that pin a flow to `server` (by its chain's token)."""
    mac = net.mac(server, "srv0")
    listing = net.run(director, "nft", "list", "table", "netdev", "vipkeeper")
    tokens = {
        token.group(1)
        for chain in listing.split("chain vs0_rs")[1:]
        if f"ether daddr set {mac}" in chain.split("\n\t}")[0]
        and (token := re.search(r"^\t\tether saddr set (\S+) update ", chain, re.M))
    }
    return sum(1 for element in elements(net, director, flow_table_name(SERVICE))
               if element[1] in tokens)  # fmt: skip


def test_flows_keep_their_server_when_a_server_added_or_removed_reshapes_the_table(
    tmp_path: Path,
):
    with LbNet(tmp_path, sorry=True) as net:
        servers = (RS["rs1"], RS["rs2"])
        d1 = backend(net, "d1")
        asyncio.run(d1.apply([VirtualServer(service=configured(*servers), real_servers=servers)]))
        net.add_vip("d1")
        client = net.client()
        owners = open_connections(client, 16)
        assert set(owners.values()) == {"rs1", "rs2"}
        # Added: the table grows with the configured count, every bucket is drawn afresh
        # (about half of these flows would land elsewhere by the hash alone).
        three = (*servers, RS3)
        asyncio.run(d1.apply([VirtualServer(service=configured(*three), real_servers=three)]))
        for conn, owner in owners.items():
            assert client.get_on(conn) == owner, conn
        assert "sorry" in spread(net)  # new flows follow the new table
        # Removed from the configuration: rs2 drains, taking no new flows.
        remaining = (RS["rs1"], RS3)
        state = [VirtualServer(service=configured(*remaining), real_servers=remaining)]
        asyncio.run(d1.apply(state))
        for conn, owner in owners.items():
            assert client.get_on(conn) == owner, conn
        assert flows_to(net, "d1", "rs2") >= list(owners.values()).count("rs2")
        assert "rs2" not in spread(net)


def test_flows_pinned_to_a_server_down_on_its_health_check_move_to_a_live_one(net: LbNet):
    servers = (RS["rs1"], RS["rs2"])
    service = configured(*servers)
    d1 = backend(net, "d1")
    asyncio.run(d1.apply([VirtualServer(service=service, real_servers=servers)]))
    net.add_vip("d1")
    client = net.client()
    owners = open_connections(client, 8)
    on_rs2 = [conn for conn, owner in owners.items() if owner == "rs2"]
    assert on_rs2 and flows_to(net, "d1", "rs2") == len(on_rs2)

    # rs2 is still configured but out of the pool (its check failed): its flows are hashed
    # again, reach rs1, which knows no such connection and resets it.
    asyncio.run(d1.apply([VirtualServer(service=service, real_servers=(RS["rs1"],))]))
    for conn in on_rs2:
        with pytest.raises(ConnectionError, match=r"reset|closed by peer"):
            client.get_on(conn)
    assert flows_to(net, "d1", "rs2") == 0
    for conn, owner in owners.items():
        if owner == "rs1":
            assert client.get_on(conn) == "rs1"


def test_an_ipv6_dr_service_gets_its_flow_table_from_the_kernel(net: LbNet):
    service = VirtualService(address="2001:db8::9:1", port=80)
    layer = StaticLinkLayer(
        devices={"2001:db8::54": "srv0"},
        device_macs={"srv0": net.mac("d1", "srv0")},
        neighbours={"2001:db8::54": net.mac("rs1", "srv0")},
    )
    prefix = ("ip", "netns", "exec", net.ns("d1"))
    nft = NftablesBackend(ingress_devices={service.address or "": "fe0"}, link_layer=layer,
                          nft=(*prefix, "nft"))  # fmt: skip
    server = RealServer(address="2001:db8::54", port=80)
    for _ in range(2):  # the second apply keeps the table the first one made
        asyncio.run(nft.apply([VirtualServer(service=service, real_servers=(server,))]))
    out = net.run("d1", "nft", "list", "map", "netdev", "vipkeeper", flow_table_name(service))
    # keyed by the 32-bit jhash of the 4-tuple (flow_table_key), with the rules that use it
    assert "typeof numgen inc mod 2 : ether saddr" in out
    listing = net.run("d1", "nft", "list", "table", "netdev", "vipkeeper")
    for statement in ("update", "delete"):
        assert f"{statement} @{flow_table_name(service)} {{ jhash ip6 saddr . tcp sport" in listing


def test_two_directors_with_the_same_configuration_keep_flows_on_the_same_real_server(
    net: LbNet,
):
    apply(net, "d1", *RS.values())
    apply(net, "d2", *RS.values())
    net.add_vip("d1")
    client = net.client()
    owners = open_connections(client, 10)
    assert set(owners.values()) == {"rs1", "rs2"}
    chains = ("vs0_rs0", "vs0_rs1")
    assert sum(net.chain_packets("d2", "netdev", "vipkeeper", c) for c in chains) == 0

    net.move_vip("d1", "d2")

    for conn, owner in owners.items():
        assert client.get_on(conn) == owner
    assert sum(net.chain_packets("d2", "netdev", "vipkeeper", c) for c in chains) > 0


def test_a_full_flow_table_leaves_new_flows_to_the_hash_and_drops_none(
    net: LbNet, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(lb_nftables_ruleset, "FLOW_TABLE_SIZE", 2)
    d1 = backend(net, "d1")
    asyncio.run(d1.apply([VirtualServer(service=SERVICE, real_servers=tuple(RS.values()))]))
    net.add_vip("d1")
    client = net.client()
    owners = open_connections(client, 8)  # each answered: forwarded without an entry
    assert len(owners) >= 8
    assert len(elements(net, "d1", flow_table_name(SERVICE))) == 2
    for conn, owner in owners.items():  # and by the hash alone, still to the same server
        assert client.get_on(conn) == owner
