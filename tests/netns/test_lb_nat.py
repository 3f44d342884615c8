"""LVS-NAT on the nftables backend, in namespaces: DNAT to real servers that route via the director.

Proves: flows to VIP:80 spread over both real servers, each reached on its own port (the map
gives address and port); replies return through the director, which conntrack un-NATs; the sorry
server takes new connections on quorum loss while an established one keeps its real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipkeeper.core.lb import ForwardingMethod, RealServer, VirtualServer, VirtualService
from vipkeeper.io.lb_nftables import NftablesBackend
from vipkeeper.testing.lbnet import VIP, LbNet

pytestmark = pytest.mark.netns

SERVICE = VirtualService(address=VIP, port=80, method=ForwardingMethod.NAT, hash_seed=0x5EED)
RS1 = RealServer(address="192.168.0.54", port=8080)
RS2 = RealServer(address="192.168.0.55", port=8081)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LbNet]:
    with LbNet(tmp_path, nat=True, server_ports={"rs1": 8080, "rs2": 8081}) as built:
        built.add_vip("d1")
        yield built


def apply(net: LbNet, virtual_server: VirtualServer) -> None:
    prefix = ("ip", "netns", "exec", net.ns("d1"))
    nft = NftablesBackend(ingress_devices={}, nft=(*prefix, "nft"))
    asyncio.run(nft.apply([virtual_server]))


def test_nat_spreads_flows_over_real_servers_on_their_own_ports(net: LbNet):
    apply(net, VirtualServer(service=SERVICE, real_servers=(RS1, RS2)))
    client = net.client()

    seen = {client.get() for _ in range(24)}

    assert seen == {"rs1", "rs2"}
    assert net.chain_packets("d1", "ip", "vipkeeper_nat", "prerouting") > 0


def test_nat_sorry_server_takes_new_flows_on_quorum_loss_and_old_flows_keep_their_server(
    net: LbNet,
):
    apply(net, VirtualServer(service=SERVICE, real_servers=(RS1,)))
    client = net.client()
    client.open(0)
    assert client.get_on(0) == "rs1"

    apply(
        net,
        VirtualServer(service=SERVICE, real_servers=(RS1,), sorry_server=RS2, in_quorum=False),
    )

    assert {client.get() for _ in range(8)} == {"rs2"}
    assert client.get_on(0) == "rs1"  # conntrack keeps the established connection's DNAT
