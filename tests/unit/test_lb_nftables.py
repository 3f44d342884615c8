"""nftables data plane: the script it renders and how it resolves link-layer facts (no kernel);
the DR flow tables across applies: test_lb_nftables_flows.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence

import pytest

from vipkeeper.core import maglev
from vipkeeper.core.lb import (
    ForwardingMethod,
    Protocol,
    RealServer,
    Scheduler,
    SchedulerFlag,
    VirtualServer,
    VirtualService,
    lookup_table,
)
from vipkeeper.io.lb_nftables import IpCommandLinkLayer, NftablesBackend
from vipkeeper.io.lb_nftables_ruleset import flow_hash_key
from vipkeeper.io.scripts import CommandFailed
from vipkeeper.testing.nftables import (
    CONFIGURED,
    DIRECTOR_MAC,
    DR,
    MACS,
    RS1,
    RS2,
    VIP,
    RecordingRunner,
    chain_body,
    link_layer,
    map_elements,
    pinned_macs,
)


def backend(runner: RecordingRunner, neighbours: dict[str, str] | None = None) -> NftablesBackend:
    return NftablesBackend(
        ingress_devices={VIP: "fe0"},
        link_layer=link_layer(neighbours),
        nft=("ip", "netns", "exec", "d1", "nft"),
        runner=runner,
    )


async def test_apply_loads_the_whole_ruleset_in_one_nft_transaction():
    runner = RecordingRunner()
    await backend(runner).apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    assert len(runner.calls) == 1
    argv, script = runner.calls[0]
    assert argv == ("ip", "netns", "exec", "d1", "nft", "-f", "-")
    assert script is not None
    # create-then-delete keeps the delete valid on first run; the new table follows in-batch
    lines = script.splitlines()
    assert lines[:2] == ["table netdev vipkeeper", "delete table netdev vipkeeper"]
    assert "table netdev vipkeeper {" in lines
    assert "flush ruleset" not in script


async def test_dr_buckets_follow_the_maglev_table_and_rewrite_only_ethernet():
    runner = RecordingRunner()
    vs = VirtualServer(service=DR, real_servers=(RS1, RS2))
    await backend(runner).apply([vs])
    script = runner.calls[0][1] or ""
    elements = map_elements(script, "vs0_buckets")
    chains = {
        name: chain_body(script, name)
        for name in {v.removeprefix("goto ") for v in elements.values()}
    }
    chain_server = {
        name: next(s for s in (RS1, RS2) if MACS[s.address] in body)
        for name, body in chains.items()
    }
    expected = lookup_table(vs)
    assert len(elements) == len(expected) == maglev.table_size_for(2)
    for bucket, server in enumerate(expected):
        assert chain_server[elements[bucket].removeprefix("goto ")] == server
    for body in chains.values():
        assert f"ether saddr set {DIRECTOR_MAC}" in body
        assert 'fwd to "srv0"' in body
        assert "ip saddr set" not in body and "ip daddr set" not in body  # IP header untouched


async def test_dr_rule_hashes_the_flow_with_the_configured_seed_and_table_size():
    runner = RecordingRunner()
    await backend(runner).apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    script = runner.calls[0][1] or ""
    ingress = chain_body(script, "ingress_fe0")
    assert 'type filter hook ingress device "fe0" priority 0' in ingress
    assert (
        f"ip daddr {VIP} tcp dport 80 jhash ip saddr . tcp sport . ip daddr . tcp dport "
        f"mod {maglev.table_size_for(2)} seed 0x0000cafe vmap @vs0_buckets"
    ) in ingress
    # packets for the service that no bucket takes are dropped, not handed to the local stack
    assert f"ip daddr {VIP} tcp dport 80 counter drop" in ingress


async def test_same_configuration_renders_the_same_script():
    first, second = RecordingRunner(), RecordingRunner()
    state = [VirtualServer(service=DR, real_servers=(RS1, RS2))]
    await backend(first).apply(state)
    await backend(second).apply(
        list(reversed([VirtualServer(service=DR, real_servers=(RS2, RS1))]))
    )
    assert first.calls[0][1] == second.calls[0][1]


async def test_server_inhibited_by_its_health_check_gets_no_bucket_and_no_chain():
    # inhibit_on_failure: weight 0 while its configured weight is 1; its pinned flows move
    runner = RecordingRunner()
    vs = VirtualServer(
        service=CONFIGURED,
        real_servers=(RS1, RealServer(address="192.168.0.55", port=80, weight=0)),
    )
    await backend(runner).apply([vs])
    script = runner.calls[0][1] or ""
    assert MACS["192.168.0.55"] not in script
    assert set(map_elements(script, "vs0_buckets").values()) == {"goto vs0_rs0"}


async def test_server_configured_at_weight_zero_keeps_its_pinned_flows_but_takes_no_new_ones():
    runner = RecordingRunner()
    quiesced = RealServer(address="192.168.0.55", port=80, weight=0)
    service = dataclasses.replace(
        DR, configured_weights=(("192.168.0.54:80", 1), ("192.168.0.55:80", 0))
    )
    await backend(runner).apply([VirtualServer(service=service, real_servers=(RS1, quiesced))])
    script = runner.calls[0][1] or ""
    assert set(map_elements(script, "vs0_buckets").values()) == {"goto vs0_rs0"}
    assert pinned_macs(script) == {MACS["192.168.0.54"], MACS["192.168.0.55"]}


async def test_server_without_mac_is_left_out_and_reported():
    runner = RecordingRunner()
    nft = backend(runner, neighbours={"192.168.0.54": MACS["192.168.0.54"]})
    await nft.apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    assert nft.unresolved == (RS2,)
    assert MACS["192.168.0.54"] in (runner.calls[0][1] or "")


async def test_sorry_server_gets_every_bucket_when_pool_is_empty():
    runner = RecordingRunner()
    sorry = RealServer(address="192.168.0.99", port=80)
    neighbours = {**MACS, "192.168.0.99": "02:00:00:00:00:99"}
    vs = VirtualServer(
        service=DR,
        real_servers=(RealServer(address="192.168.0.54", port=80, weight=0),),
        sorry_server=sorry,
    )
    await backend(runner, neighbours).apply([vs])
    script = runner.calls[0][1] or ""
    assert "02:00:00:00:00:99" in chain_body(script, "vs0_rs0")
    assert set(map_elements(script, "vs0_buckets").values()) == {"goto vs0_rs0"}


async def test_service_without_servers_only_drops():
    runner = RecordingRunner()
    await backend(runner).apply([VirtualServer(service=DR, real_servers=())])
    script = runner.calls[0][1] or ""
    assert "vmap" not in script
    assert f"ip daddr {VIP} tcp dport 80 counter drop" in chain_body(script, "ingress_fe0")


async def test_nat_maps_buckets_to_address_and_port_in_ip_family():
    runner = RecordingRunner()
    nat = VirtualService(address=VIP, port=80, method=ForwardingMethod.NAT, hash_seed=7)
    servers = (RealServer(address="192.168.0.54", port=8080), RS2)
    vs = VirtualServer(service=nat, real_servers=servers)
    await backend(runner).apply([vs])
    script = runner.calls[0][1] or ""
    assert "table ip vipkeeper_nat {" in script
    assert "table netdev vipkeeper {" not in script
    prerouting = chain_body(script, "prerouting")
    assert "type nat hook prerouting priority dstnat" in prerouting
    assert "dnat ip addr . port to jhash ip saddr . tcp sport . ip daddr . tcp dport" in prerouting
    elements = map_elements(script, "vs0_buckets")
    expected = lookup_table(vs)
    assert [elements[i] for i in range(len(expected))] == [
        f"{s.address} . {s.port}" for s in expected
    ]


async def test_clear_deletes_every_table_it_owns_in_one_transaction():
    runner = RecordingRunner()
    await backend(runner).clear()
    ((argv, script),) = runner.calls
    assert argv[-2:] == ("-f", "-")
    assert script is not None
    assert "delete table netdev vipkeeper" in script
    assert "delete table ip vipkeeper_nat" in script
    assert "{" not in script


async def test_fwmark_dr_is_refused_with_a_reason():
    runner = RecordingRunner()
    vs = VirtualServer(service=VirtualService(fwmark=5), real_servers=(RS1,))
    with pytest.raises(ValueError, match="fwmark"):
        await backend(runner).apply([vs])
    assert runner.calls == []


async def test_dr_vip_without_ingress_interface_is_an_error():
    runner = RecordingRunner()
    other = VirtualService(address="172.16.9.2", port=80)
    with pytest.raises(ValueError, match="ingress"):
        await backend(runner).apply([VirtualServer(service=other, real_servers=(RS1,))])


@pytest.mark.parametrize(
    ("service", "key"),
    [
        (DR, "ip saddr . tcp sport . ip daddr . tcp dport"),
        (
            VirtualService(address=VIP, port=53, protocol=Protocol.UDP),
            "ip saddr . udp sport . ip daddr . udp dport",
        ),
        (VirtualService(address=VIP, port=80, scheduler=Scheduler.SOURCE_HASH), "ip saddr"),
        (
            VirtualService(
                address=VIP,
                port=80,
                scheduler=Scheduler.MAGLEV_HASH,
                scheduler_flags=frozenset({SchedulerFlag.PORT}),
            ),
            "ip saddr . tcp sport",
        ),
        (VirtualService(address=VIP, port=80, persistence_timeout=300), "ip saddr"),
        (
            VirtualService(address="2001:db8::1", port=80),
            "ip6 saddr . tcp sport . ip6 daddr . tcp dport",
        ),
    ],
)
def test_flow_hash_key_per_scheduler(service: VirtualService, key: str):
    assert flow_hash_key(service) == key


class FakeIp:
    """Answers `ip -j ...` like iproute2; the neighbour appears only after a probe."""

    def __init__(self, *, gateway: str | None = None) -> None:
        self.probed = False
        self.gateway = gateway
        self.calls: list[tuple[str, ...]] = []

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        argv = tuple(argv)
        self.calls.append(argv)
        if argv[:2] == ("ip", "-j") and argv[2:4] == ("route", "get"):
            route: dict[str, str] = {"dst": argv[4], "dev": "srv0"}
            if self.gateway:
                route["gateway"] = self.gateway
            return json.dumps([route])
        if argv[:4] == ("ip", "-j", "link", "show"):
            return json.dumps([{"ifname": "srv0", "address": "02:AA:00:00:00:53"}])
        if argv[:4] == ("ip", "-j", "neigh", "show"):
            if not self.probed:
                return json.dumps([{"dst": argv[5], "dev": "srv0", "state": ["INCOMPLETE"]}])
            return json.dumps(
                [
                    {
                        "dst": argv[5],
                        "dev": "srv0",
                        "lladdr": "02:00:00:00:00:54",
                        "state": ["REACHABLE"],
                    }
                ]
            )
        if argv[0] == "ping":
            self.probed = True
            raise CommandFailed(argv, 1, "no reply")
        raise AssertionError(f"unexpected command {argv}")


async def test_ip_link_layer_probes_an_unknown_neighbour_then_reads_its_mac():
    fake = FakeIp()
    layer = IpCommandLinkLayer(runner=fake)
    device = await layer.route_device("192.168.0.54")
    assert device == "srv0"
    assert await layer.link_address(device) == "02:aa:00:00:00:53"
    assert await layer.neighbour_address("192.168.0.54", device) == "02:00:00:00:00:54"
    assert ("ping", "-c", "1", "-W", "1", "-I", "srv0", "192.168.0.54") in fake.calls


async def test_ip_link_layer_refuses_a_real_server_behind_a_gateway():
    layer = IpCommandLinkLayer(runner=FakeIp(gateway="192.168.0.1"))
    with pytest.raises(LookupError, match="gateway"):
        await layer.route_device("10.9.9.9")


async def test_ip_link_layer_prefix_runs_commands_in_a_namespace():
    calls: list[tuple[str, ...]] = []

    async def runner(argv: Sequence[str], stdin: str | None) -> str:
        calls.append(tuple(argv))
        return json.dumps([{"dst": "192.168.0.54", "dev": "srv0"}])

    layer = IpCommandLinkLayer(prefix=("ip", "netns", "exec", "d1"), runner=runner)
    assert await layer.route_device("192.168.0.54") == "srv0"
    assert calls == [("ip", "netns", "exec", "d1", "ip", "-j", "route", "get", "192.168.0.54")]


async def test_dr_rules_take_only_frames_addressed_to_this_director():
    # A switch floods frames for an unknown MAC to every port; the Backup director's ingress
    # hook sees them before the IP layer would discard them, and must not forward a copy.
    runner = RecordingRunner()
    await backend(runner).apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    ingress = chain_body(runner.calls[0][1] or "", "ingress_fe0")
    rules = [line.strip() for line in ingress.splitlines() if f"ip daddr {VIP}" in line]
    assert len(rules) == 4  # the pinned flows, the stale entries, the hash and the drop
    assert all(rule.startswith("meta pkttype host fib daddr type local ") for rule in rules), rules


class ListingRunner(RecordingRunner):
    """Answers `nft -j list table FAMILY TABLE` with the JSON given for that family."""

    def __init__(self, listings: dict[str, object]) -> None:
        super().__init__()
        self.listings = listings

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        await super().__call__(argv, stdin)
        if "list" in argv:
            family = argv[argv.index("table") + 1]
            if family not in self.listings:
                raise CommandFailed(list(argv), 1, "No such file or directory")
            return json.dumps(self.listings[family])
        return ""


def _rule(family: str, chain: str, comment: str, packets: int, size: int, *verdict: object):
    expressions = [{"counter": {"packets": packets, "bytes": size}}, *verdict]
    return {"rule": {"family": family, "table": "t", "chain": chain, "handle": 2,
                     "comment": comment, "expr": expressions}}  # fmt: skip


def test_counters_read_back_per_dr_real_server_and_per_nat_service():
    nat_service = VirtualService(
        address="172.16.9.2", port=80, method=ForwardingMethod.NAT, hash_seed=1
    )
    listings = {
        "netdev": {"nftables": [
            {"metainfo": {"json_schema_version": 1}},
            _rule("netdev", "vs0_rs0", "192.168.0.54:80", 40, 4000),
            _rule("netdev", "vs0_rs1", "192.168.0.55:80", 2, 120),
            _rule("netdev", "ingress_fe0", "TCP 172.16.9.1:80", 9, 900, {"drop": None}),
        ]},
        "ip": {"nftables": [
            _rule("ip", "prerouting", "TCP 172.16.9.2:80", 7, 420, {"dnat": {"family": "ip"}}),
            _rule("ip", "prerouting", "TCP 172.16.9.2:80", 1, 60, {"drop": None}),
        ]},
    }  # fmt: skip
    runner = ListingRunner(listings)
    nft = backend(runner)
    assert asyncio.run(nft.counters()).servers == {}  # nothing applied yet: nothing to read
    asyncio.run(
        nft.apply(
            [
                VirtualServer(service=DR, real_servers=(RS1, RS2)),
                VirtualServer(service=nat_service, real_servers=(RS1,)),
            ]
        )
    )
    counters = asyncio.run(nft.counters())
    assert counters.servers == {
        (DR.key, "192.168.0.54:80"): (40, 4000),
        (DR.key, "192.168.0.55:80"): (2, 120),
    }
    assert counters.connections == {nat_service.key: 7}
