"""Hostile neighbours: a Master under a flood from a host that is not its peer keeps its state.

Each case (vipkeeper.testing.hostile) starts vipkeeper as the only router (it becomes Master), then
the attacker floods the LAN for FLOOD seconds as fast as it can: priority-254 adverts from a
non-peer when unicast_peer is configured, priority-254 v2 adverts with a wrong PASS password,
lower-priority adverts, malformed ARP frames for the VIP. Afterwards the daemon has logged no
state change since it became Master, still holds the VIP, and its status document counts the
adverts it dropped (by reason) or received: the flood reached it and was refused, not missed.
The last case is the counter-proof: adverts carrying the password as read off the wire make it
step down, which is what PASS authentication does not protect against (docs/benchmarks.md).
With `vrrp_peer_filter` the non-peer flood never reaches the daemon: the filter's drop counter
grows by what was sent while the daemon's own counters stay where they were, and a clean stop
removes the filter's table; the filter follows a reload, and sorts IPv6 adverts by source too.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from vipkeeper import control
from vipkeeper.core import vrrp_wire
from vipkeeper.io import vrrp_filter
from vipkeeper.testing.daemons import Subnet, Vipkeeper, instance_config, start_vipkeeper
from vipkeeper.testing.hostile import (
    CASE_NAMES,
    Case,
    flood_count,
    master_config,
    start_flood,
    vip,
)
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

FLOOD = 3.0  # seconds


def status(daemon: Vipkeeper) -> dict[str, Any]:
    try:
        return control.request(str(daemon.control_socket), "status", timeout=10)
    except control.ControlError as error:  # not serving yet: a condition to poll for
        raise AssertionError(f"{daemon!r}: {error}") from error


def counters(document: dict[str, Any]) -> tuple[int, dict[str, int]]:
    (instance,) = document["instances"]
    return instance["adverts"]["received"], dict(instance["dropped"])


def filter_dropped(document: dict[str, Any]) -> int:
    assert document["vrrp_filter"] is not None, "vrrp_peer_filter set but no filter installed"
    return int(document["vrrp_filter"]["dropped"]["packets"])


@pytest.mark.parametrize(
    ("name", "dropped_as"),
    [("non-peer", "unicast_peer"), ("non-peer-filtered", None), ("wrong-password", "auth_mismatch"),
     ("lower-priority", None), ("malformed-arp", None), ("sniffed-password", None)],
)  # fmt: skip
def test_a_flood_from_a_non_peer_changes_no_state(
    lab: Lab, name: str, dropped_as: str | None
) -> None:
    case: Case = CASE_NAMES[name]
    net = Subnet.next()
    master = lab.add_host("r1", [net.v4_cidr(1)])
    lab.add_host("r2", [net.v4_cidr(2)])
    attacker = lab.add_host("evil", [net.v4_cidr(66)])
    daemon = start_vipkeeper(lab, master, master_config(case, net.number))
    poll(20, lambda: assert_master(daemon), [daemon])
    became_master = daemon.entered("MASTER")
    assert became_master is not None
    before = poll(10, lambda: status(daemon), [daemon])
    received_before, dropped_before = counters(before)

    flood = start_flood(lab, attacker, case, net.number, FLOOD)
    sent = flood_count(flood, timeout=FLOOD + 60)
    assert sent > 0

    if case.state_change_expected:
        poll(10, lambda: assert_state(daemon, "BACKUP"), [daemon])
        return
    document = poll(10, lambda: status(daemon), [daemon])
    received_after, dropped_after = counters(document)
    later = [t for t in daemon.transitions() if t.at > became_master.at]
    assert later == [], f"{name}: state changed under the flood: {later}\n{daemon.log()}"
    assert f"{vip(net.number)}/24" in lab.addresses(master, "inet")
    if dropped_as is not None:
        refused = dropped_after.get(dropped_as, 0) - dropped_before.get(dropped_as, 0)
        assert refused > 0, f"no advert dropped as {dropped_as}: {dropped_after}"
    if case.peer_filter:
        in_kernel = filter_dropped(document) - filter_dropped(before)
        assert in_kernel >= sent * 0.9, f"the filter dropped {in_kernel} of {sent} sent"
        assert (received_after, dropped_after) == (received_before, dropped_before), (
            "adverts of the flood reached the daemon through the filter"
        )
        assert daemon.stop() == 0
        assert f"inet {vrrp_filter.TABLE}" not in lab.run(master, "nft", "list", "tables").stdout
    elif case.kind == "vrrp" and dropped_as is None:
        assert received_after > received_before, "the lower-priority adverts never arrived"


def assert_master(daemon: Vipkeeper) -> None:
    assert_state(daemon, "MASTER")


def assert_state(daemon: Vipkeeper, state: str) -> None:
    found = daemon.state()
    assert found == state, f"state {found}, expected {state}"


def test_the_peer_filter_follows_a_reload_and_keeps_its_counts(lab: Lab) -> None:
    """A reload that makes the attacker a peer lets its adverts in (counted as accepted, the
    drop count kept); a reload without vrrp_peer_filter removes the table."""
    case: Case = CASE_NAMES["non-peer-filtered"]
    net = Subnet.next()
    master = lab.add_host("r1", [net.v4_cidr(1)])
    lab.add_host("r2", [net.v4_cidr(2)])
    attacker = lab.add_host("evil", [net.v4_cidr(66)])
    config = master_config(case, net.number)
    daemon = start_vipkeeper(lab, master, config)
    poll(20, lambda: assert_master(daemon), [daemon])
    assert flood_count(start_flood(lab, attacker, case, net.number, 1.0), timeout=60) > 0
    dropped = filter_dropped(poll(10, lambda: status(daemon), [daemon]))
    assert dropped > 0

    peers = f"unicast_peer {{\n        {net.v4(2)}\n"
    daemon.config_path.write_text(config.replace(peers, peers + f"        {net.v4(66)}\n"))
    assert control.request(str(daemon.control_socket), "reload", timeout=30)["result"] == "applied"
    document = status(daemon)
    assert document["vrrp_filter"]["peers"] == [
        {"interface": "eth0", "address": net.v4(2)},
        {"interface": "eth0", "address": net.v4(66)},
    ]
    assert filter_dropped(document) >= dropped  # the counters survive the reload
    accepted = document["vrrp_filter"]["accepted"]["packets"]
    sent = flood_count(start_flood(lab, attacker, case, net.number, 1.0), timeout=60)
    document = poll(10, lambda: status(daemon), [daemon])
    assert document["vrrp_filter"]["accepted"]["packets"] - accepted >= sent * 0.9

    daemon.config_path.write_text(config.replace("    vrrp_peer_filter\n", ""))
    assert control.request(str(daemon.control_socket), "reload", timeout=30)["result"] == "applied"
    assert status(daemon)["vrrp_filter"] is None
    assert f"inet {vrrp_filter.TABLE}" not in lab.run(master, "nft", "list", "tables").stdout


SEND_V6 = r"""
import socket, sys
destination, count, packet = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
for _ in range(count):
    sock.sendto(packet, (destination, 0))
"""


def test_the_peer_filter_sorts_ipv6_vrrp_by_source(lab: Lab) -> None:
    """IPv6 adverts: a non-peer's are dropped in the kernel, the peer's go on to the daemon."""
    net = Subnet.next()
    master = lab.add_host("r1", [net.v6_cidr(1)])
    peer = lab.add_host("r2", [net.v6_cidr(2)])
    attacker = lab.add_host("evil", [net.v6_cidr(0x66)])
    config = "global_defs {\n    router_id r1\n    vrrp_peer_filter\n}\n" + instance_config(
        priority=200, vips=[net.vip6_cidr], version=3, unicast_src_ip=net.v6(1),
        unicast_peers=[net.v6(2)],
    )  # fmt: skip
    daemon = start_vipkeeper(lab, master, config)
    poll(20, lambda: assert_master(daemon), [daemon])
    before = poll(10, lambda: status(daemon), [daemon])
    received_before, _dropped = counters(before)
    count = 200
    for host, source in ((attacker, net.v6(0x66)), (peer, net.v6(2))):
        advert = vrrp_wire.Advertisement(version=3, vrid=51, priority=100,
                                         addresses=(net.vip6,), wire_interval=100)  # fmt: skip
        packet = vrrp_wire.encode(advert, source=source, destination=net.v6(1))
        lab.run(host, sys.executable, "-c", SEND_V6, net.v6(1), str(count), packet.hex())

    def counted() -> dict[str, Any]:
        document = status(daemon)
        assert filter_dropped(document) - filter_dropped(before) == count
        accepted = document["vrrp_filter"]["accepted"]["packets"]
        assert accepted - before["vrrp_filter"]["accepted"]["packets"] >= count
        return document

    document = poll(10, counted, [daemon])
    assert counters(document)[0] - received_before >= count  # the peer's reached the daemon
