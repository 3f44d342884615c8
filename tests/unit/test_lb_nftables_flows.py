"""nftables DR flow tables (no kernel): established flows keep their real server across applies;
servers draining, quiesced or out of the pool keep or lose their pinned flows as IPVS would."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import pytest

from vipkeeper.core import maglev
from vipkeeper.core.lb import Protocol, Scheduler, VirtualServer, VirtualService
from vipkeeper.io.lb_nftables import NftablesBackend
from vipkeeper.io.lb_nftables_ruleset import FLOW_TABLE_SIZE, FLOW_TIMEOUTS, flow_hash_key
from vipkeeper.io.scripts import CommandFailed
from vipkeeper.testing.nftables import (
    CONFIGURED,
    DIRECTOR_MAC,
    DR,
    FLOWS,
    MACS,
    RS1,
    RS2,
    VIP,
    RecordingRunner,
    chain_body,
    link_layer,
    map_elements,
    pinned,
    pinned_macs,
)


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
