"""LVS-DR on the nftables backend, in namespaces: real HTTP servers behind a VIP.

Proves: flows spread over both real servers; a real server receives packets addressed to the VIP
(only the Ethernet header was rewritten); replies go from the real server straight to the client,
never through the director; a new atomic ruleset (reweight, removal) leaves an in-flight
keep-alive connection to a remaining server working; two directors with the same configuration
send the same flow to the same real server, so connections survive moving the VIP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipkeeper.core.lb import RealServer, VirtualServer, VirtualService
from vipkeeper.io.lb_nftables import IpCommandLinkLayer, NftablesBackend
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


def apply(net: LbNet, director: str, *servers: RealServer) -> None:
    state = [VirtualServer(service=SERVICE, real_servers=servers)]
    asyncio.run(backend(net, director).apply(state))


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
