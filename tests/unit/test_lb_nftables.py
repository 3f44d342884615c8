"""nftables data plane: the script it renders and how it resolves link-layer facts (no kernel)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
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
from vipkeeper.io.lb_nftables import (
    IpCommandLinkLayer,
    NftablesBackend,
    StaticLinkLayer,
)
from vipkeeper.io.lb_nftables_ruleset import FLOW_TABLE_SIZE, FLOW_TIMEOUTS, flow_hash_key
from vipkeeper.io.scripts import CommandFailed

VIP = "172.16.9.1"
RS1 = RealServer(address="192.168.0.54", port=80)
RS2 = RealServer(address="192.168.0.55", port=80)
DIRECTOR_MAC = "02:00:00:00:00:53"
MACS = {"192.168.0.54": "02:00:00:00:00:54", "192.168.0.55": "02:00:00:00:00:55"}
DR = VirtualService(address=VIP, port=80, hash_seed=0xCAFE)
# As the configuration layer builds it: both real servers configured at weight 1.
CONFIGURED = dataclasses.replace(
    DR, configured_weights=(("192.168.0.54:80", 1), ("192.168.0.55:80", 1))
)
FLOWS = "flows_tcp_172_16_9_1_80"


class RecordingRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        self.calls.append((tuple(argv), stdin))
        return ""


def link_layer(neighbours: dict[str, str] | None = None) -> StaticLinkLayer:
    return StaticLinkLayer(
        devices={"192.168.0.54": "srv0", "192.168.0.55": "srv0", "192.168.0.99": "srv0"},
        device_macs={"srv0": DIRECTOR_MAC},
        neighbours=MACS if neighbours is None else neighbours,
    )


def backend(runner: RecordingRunner, neighbours: dict[str, str] | None = None) -> NftablesBackend:
    return NftablesBackend(
        ingress_devices={VIP: "fe0"},
        link_layer=link_layer(neighbours),
        nft=("ip", "netns", "exec", "d1", "nft"),
        runner=runner,
    )


def map_elements(script: str, name: str) -> dict[int, str]:
    match = re.search(rf"map {name} {{.*?elements = {{ (.*?) }}", script, re.S)
    assert match, f"map {name} missing"
    pairs = (element.split(" : ") for element in match.group(1).split(", "))
    return {int(bucket): value for bucket, value in pairs}


def pinned(script: str) -> dict[str, str]:
    """The pinned-flow vmap of service vs0, followed to the real servers: token -> the MAC of
    the server its chain forwards to."""
    match = re.search(r"map vs0_pinned {.*?elements = { (.*?) }", script, re.S)
    if match is None:
        return {}
    pairs = (element.split(" : ") for element in match.group(1).split(", "))
    found = {}
    for token, verdict in pairs:
        rs = chain_body(script, verdict.removeprefix("goto "))
        assert f"ether saddr set {token} update" in rs  # the chain pins flows with this token
        mac = re.search(r"ether daddr set (\S+)", rs)
        assert mac, rs
        found[token] = mac.group(1)
    return found


def pinned_macs(script: str) -> set[str]:
    return set(pinned(script).values())


def chain_body(script: str, name: str) -> str:
    match = re.search(rf"chain {name} {{\n(.*?)\n  }}", script, re.S)
    assert match, f"chain {name} missing"
    return match.group(1)


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


# ---- DR flow tables: established flows keep their real server across applies ----------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flows_backend(runner: RecordingRunner, clock: Clock | None = None) -> NftablesBackend:
    return NftablesBackend(
        ingress_devices={VIP: "fe0", "2001:db8::1": "fe0"},
        link_layer=link_layer(),
        nft=("nft",),
        runner=runner,
        clock=clock or Clock(),
    )


def scripts(runner: RecordingRunner) -> list[str]:
    return [script or "" for _, script in runner.calls]


def flow_table(script: str, name: str = FLOWS) -> str | None:
    match = re.search(rf"^  map {name} {{ (.*) }}$", script, re.M)
    return match.group(1) if match else None


async def test_dr_flow_table_maps_the_hash_key_to_the_real_server_mac_with_ipvs_timeout():
    runner = RecordingRunner()
    await flows_backend(runner).apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    (script,) = scripts(runner)
    assert flow_table(script) == (
        "typeof ip saddr . tcp sport . ip daddr . tcp dport : ether saddr;"
        f" flags dynamic,timeout; timeout 900s; size {FLOW_TABLE_SIZE};"
    )
    assert FLOW_TIMEOUTS == {Protocol.TCP: 900, Protocol.UDP: 300}  # ipvsadm's defaults


@pytest.mark.parametrize(
    ("service", "name", "declaration"),
    [
        (
            VirtualService(address=VIP, port=53, protocol=Protocol.UDP),
            "flows_udp_172_16_9_1_53",
            "typeof ip saddr . udp sport . ip daddr . udp dport : ether saddr; "
            "flags dynamic,timeout; timeout 300s;",
        ),
        (
            VirtualService(address=VIP, port=80, persistence_timeout=1800),
            FLOWS,
            "typeof ip saddr : ether saddr; flags dynamic,timeout; timeout 1800s;",
        ),
        (
            VirtualService(address=VIP, port=80, persistence_timeout=60),
            FLOWS,
            "typeof ip saddr : ether saddr; flags dynamic,timeout; timeout 900s;",
        ),
        (
            VirtualService(address="2001:db8::1", port=80),
            "flows_tcp_20010db8000000000000000000000001_80",
            # its 32-bit jhash (flow_table_key): nft 1.0.6 cannot update a wider key
            "typeof numgen inc mod 2 : ether saddr; flags dynamic,timeout; timeout 900s;",
        ),
    ],
)
async def test_dr_flow_table_key_and_timeout_per_service(
    service: VirtualService, name: str, declaration: str
):
    runner = RecordingRunner()
    await flows_backend(runner).apply([VirtualServer(service=service, real_servers=(RS1,))])
    table = flow_table(scripts(runner)[0], name)
    assert table is not None and table.startswith(declaration), table


async def test_dr_pinned_flows_go_to_their_server_before_the_hash_and_every_packet_refreshes():
    runner = RecordingRunner()
    await flows_backend(runner).apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    (script,) = scripts(runner)
    key = flow_hash_key(DR)
    rules = [r.strip() for r in chain_body(script, "ingress_fe0").splitlines()[1:]]
    assert [r.split(" comment ")[0].removeprefix(f"{GUARD} ip daddr {VIP} tcp dport 80 ")
            for r in rules] == [
        f"ether saddr set {key} map @{FLOWS} ether saddr vmap @vs0_pinned",
        f"delete @{FLOWS} {{ {key} : ether saddr }}",  # an entry whose token has no chain
        f"jhash {key} mod {maglev.table_size_for(2)} seed 0x0000cafe vmap @vs0_buckets",
        "counter drop",
    ]  # fmt: skip
    assert pinned_macs(script) == {MACS["192.168.0.54"], MACS["192.168.0.55"]}
    for index, (token, mac) in enumerate(pinned(script).items()):
        body = [line.strip() for line in chain_body(script, f"vs0_rs{index}").splitlines()]
        # the update pins a new flow with the chain's token and refreshes a pinned one; the
        # forwarding is a rule of its own: a full flow table ends the update's rule, not it
        assert body[0].startswith(
            f"ether saddr set {token} update @{FLOWS} {{ {key} : ether saddr }} comment "
        )
        assert body[1].startswith(f"counter ether saddr set {DIRECTOR_MAC} ether daddr set {mac}")
        assert 'fwd to "srv0"' in body[1]


GUARD = "meta pkttype host fib daddr type local"


async def test_second_apply_keeps_the_netdev_table_and_its_flow_table_in_one_transaction():
    runner = RecordingRunner()
    nft = flows_backend(runner)
    await nft.apply([VirtualServer(service=CONFIGURED, real_servers=(RS1, RS2))])
    await nft.apply([VirtualServer(service=CONFIGURED, real_servers=(RS1,))])
    first, second = scripts(runner)
    assert "delete table netdev vipkeeper" in first
    lines = second.splitlines()
    assert "delete table netdev vipkeeper" not in lines
    assert lines.index("flush table netdev vipkeeper") < lines.index("table netdev vipkeeper {")
    deleted = {line.removeprefix("delete ") for line in lines if line.startswith("delete ")}
    assert deleted == {
        "table ip vipkeeper_nat",
        "table ip6 vipkeeper_nat",
        "map netdev vipkeeper vs0_pinned",
        "map netdev vipkeeper vs0_buckets",
        "chain netdev vipkeeper vs0_rs0",
        "chain netdev vipkeeper vs0_rs1",
    }
    assert flow_table(second) is None  # kept as it is, elements and all
    assert f"@{FLOWS}" in second
    # the ingress chain is declared again unchanged, and its rules follow the new table
    assert 'type filter hook ingress device "fe0" priority 0' in chain_body(second, "ingress_fe0")
    assert pinned_macs(second) == {MACS["192.168.0.54"]}


async def test_a_changed_flow_key_or_removed_service_replaces_or_deletes_its_flow_table():
    runner = RecordingRunner()
    nft = flows_backend(runner)
    other = VirtualService(address=VIP, port=443, hash_seed=0xCAFE)
    await nft.apply([VirtualServer(service=s, real_servers=(RS1,)) for s in (DR, other)])
    hashed_by_source = dataclasses.replace(DR, scheduler=Scheduler.SOURCE_HASH)
    await nft.apply([VirtualServer(service=hashed_by_source, real_servers=(RS1,))])
    second = scripts(runner)[1]
    assert "delete map netdev vipkeeper flows_tcp_172_16_9_1_443" in second
    assert f"delete map netdev vipkeeper {FLOWS}" in second
    assert (flow_table(second) or "").startswith("typeof ip saddr : ether saddr;")
    # no DR service left: the netdev table goes, flow tables and all
    await nft.apply([])
    assert "delete table netdev vipkeeper" in scripts(runner)[2]
    assert "table netdev vipkeeper {" not in scripts(runner)[2]


async def test_a_real_server_removed_from_the_configuration_drains_for_the_flow_timeout():
    runner, clock = RecordingRunner(), Clock()
    nft = flows_backend(runner, clock)
    await nft.apply([VirtualServer(service=CONFIGURED, real_servers=(RS1, RS2))])
    without_rs2 = dataclasses.replace(CONFIGURED, configured_weights=(("192.168.0.54:80", 1),))
    state = [VirtualServer(service=without_rs2, real_servers=(RS1,))]
    await nft.apply(state)
    script = scripts(runner)[-1]
    # rs2 takes no new flow but keeps forwarding the flows pinned to it
    assert set(map_elements(script, "vs0_buckets").values()) == {"goto vs0_rs0"}
    assert pinned_macs(script) == {MACS["192.168.0.54"], MACS["192.168.0.55"]}
    assert MACS["192.168.0.55"] in chain_body(script, "vs0_rs1")
    clock.now += FLOW_TIMEOUTS[Protocol.TCP] - 1
    await nft.apply(state)
    assert MACS["192.168.0.55"] in pinned_macs(scripts(runner)[-1])
    clock.now += 2  # the flow timeout has passed since the removal
    await nft.apply(state)
    assert pinned_macs(scripts(runner)[-1]) == {MACS["192.168.0.54"]}


async def test_a_real_server_down_on_its_health_check_loses_its_pinned_flows():
    runner = RecordingRunner()
    nft = flows_backend(runner)
    await nft.apply([VirtualServer(service=CONFIGURED, real_servers=(RS1, RS2))])
    # still configured, gone from the pool: a dead server cannot answer, its flows move
    await nft.apply([VirtualServer(service=CONFIGURED, real_servers=(RS1,))])
    script = scripts(runner)[-1]
    assert MACS["192.168.0.55"] not in script
    assert pinned_macs(script) == {MACS["192.168.0.54"]}


async def test_a_real_server_added_back_while_draining_takes_new_flows_again():
    runner = RecordingRunner()
    nft = flows_backend(runner)
    await nft.apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    await nft.apply([VirtualServer(service=DR, real_servers=(RS1,))])
    await nft.apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    script = scripts(runner)[-1]
    assert set(map_elements(script, "vs0_buckets").values()) == {"goto vs0_rs0", "goto vs0_rs1"}
    assert len(re.findall(r"^  chain vs0_rs\d+ {", script, re.M)) == 2


class FailingOnce(RecordingRunner):
    """Fails the first script that keeps the netdev table (as if someone had deleted it)."""

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        await super().__call__(argv, stdin)
        if stdin and "flush table netdev" in stdin and not getattr(self, "failed", False):
            self.failed = True
            raise CommandFailed(list(argv), 1, "No such file or directory")
        return ""


async def test_a_table_changed_behind_its_back_is_rebuilt_whole():
    runner = FailingOnce()
    nft = flows_backend(runner)
    await nft.apply([VirtualServer(service=DR, real_servers=(RS1, RS2))])
    await nft.apply([VirtualServer(service=DR, real_servers=(RS1,))])
    assert len(runner.calls) == 3
    assert "delete table netdev vipkeeper" in scripts(runner)[2]
    assert flow_table(scripts(runner)[2]) is not None
    assert nft.applied_script == scripts(runner)[2]


async def test_a_server_keeps_its_token_while_it_has_a_chain_and_gets_a_new_one_after_leaving():
    runner = RecordingRunner()
    nft = flows_backend(runner)
    both = [VirtualServer(service=CONFIGURED, real_servers=(RS1, RS2))]
    await nft.apply(both)
    tokens = {mac: token for token, mac in pinned(scripts(runner)[-1]).items()}
    await nft.apply(both)  # a reload that changes nothing here: the same tokens
    assert {mac: t for t, mac in pinned(scripts(runner)[-1]).items()} == tokens
    await nft.apply([VirtualServer(service=CONFIGURED, real_servers=(RS1,))])  # rs2 down
    await nft.apply(both)  # rs2 up again: entries naming its old token stay unpinned
    again = {mac: t for t, mac in pinned(scripts(runner)[-1]).items()}
    assert again[MACS["192.168.0.54"]] == tokens[MACS["192.168.0.54"]]
    assert again[MACS["192.168.0.55"]] != tokens[MACS["192.168.0.55"]]
