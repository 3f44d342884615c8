"""The LVS director end to end: `vipkeeper run` in two directors, real HTTP servers behind a VIP.

Unlike test_lb_dr.py / test_lb_nat.py (the nftables backend driven by hand, the VIP placed by
hand), here the daemons do everything from one keepalived.conf: VRRP elects the Master and puts
the VIP on its fe0, the health checkers decide the pool, the director applies it to nftables.

Proves, in namespaces (`vipkeeper.testing.lbnet`):
- DR: requests to VIP:80 spread over both real servers; each real server receives packets whose
  destination is the VIP; replies go from the real servers to the client, never through a
  director; only the Master forwards.
- A real server's HTTP service dies: it leaves the pool within the configured bound, after which
  no request fails and all go to the other server; restarted, it is used again.
- A hard failure of the Master (every process killed, links cut) loses no request and resets no
  connection on long-lived keep-alive sessions: the Backup takes over, its gratuitous ARP moves
  the client, and the same Maglev table + jhash seed send every flow to the same real server.
- NAT mode with the daemons, the real servers routing through a second, server-side VIP.
- Quorum loss switches the service to the sorry server, and back when quorum returns.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from vipkeeper.testing.daemons import log_time
from vipkeeper.testing.lbnet import (
    CLIENT_IP,
    VIP,
    Client,
    LbNet,
    Vipkeeper,
    director_config,
    serving,
)
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns


RS1, RS2 = "192.168.0.54:80", "192.168.0.55:80"
SORRY = "192.168.0.56:80"
# VRRP with advert_int 1: master down interval 3 x 1 + skew, plus the first advert and the
# director's first nft apply (a ping to learn each real server's MAC), counted from the daemon's
# launch: its start-up (imports, netlink) takes several seconds on a loaded 2-core machine.
ELECTION = 15.0
# Health timing of director_config's defaults (delay_loop 1, connect_timeout 1, retry 1,
# delay_before_retry 1): delay_loop + (retry + 1) * connect_timeout + retry * delay_before_retry
DETECTION_BOUND = 1 + (1 + 1) * 1 + 1 * 1
MARGIN = 1.5  # an nft transaction, process scheduling on a loaded 2-core machine


def pool(net: LbNet, director: str) -> set[str]:
    """Real servers (address:port) the director's DR bucket map sends flows to."""
    table = json.loads(net.run(director, "nft", "-j", "list", "table", "netdev", "vipkeeper"))
    chain_server: dict[str, str] = {}
    targets: set[str] = set()
    for item in table["nftables"]:
        if "rule" in item and item["rule"]["chain"].startswith("vs0_rs"):
            chain_server[item["rule"]["chain"]] = item["rule"]["comment"]
        elif "map" in item and item["map"]["name"] == "vs0_buckets":
            for _bucket, verdict in item["map"].get("elem", []):
                targets.add(verdict["goto"]["target"])
    return {chain_server[chain] for chain in targets}


def nat_pool(net: LbNet, director: str) -> set[str]:
    """Real servers (address:port) the director's NAT bucket map translates to."""
    found = json.loads(net.run(director, "nft", "-j", "list", "map", "ip", "vipkeeper_nat",
                               "vs0_buckets"))  # fmt: skip
    servers: set[str] = set()
    for item in found["nftables"]:
        for _bucket, value in item.get("map", {}).get("elem", []):
            address, port = value["concat"]
            servers.add(f"{address}:{port}")
    return servers


def forwarded(net: LbNet, director: str) -> int:
    """Packets the director's per-real-server DR chains sent on (0 if it has none yet)."""
    table = json.loads(net.run(director, "nft", "-j", "list", "table", "netdev", "vipkeeper"))
    total = 0
    for item in table["nftables"]:
        rule = item.get("rule", {})
        if rule.get("chain", "").startswith("vs0_rs"):
            total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return total


def wait_master(director: Vipkeeper, others: Sequence[Vipkeeper], within: float) -> None:
    def is_master() -> None:
        assert director.states()[-1:] == ["MASTER"], f"{director!r} is not MASTER"
        for other in others:
            assert other.states()[-1:] != ["MASTER"], f"{other!r} is MASTER too"

    poll(within, is_master, [director, *others])


def counts(client: Client, requests: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(requests):
        body = client.get()  # raises ConnectionError: a failed request fails the test
        seen[body] = seen.get(body, 0) + 1
    return seen


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LbNet]:
    with LbNet(tmp_path) as built:
        yield built


@pytest.fixture
def directors(net: LbNet) -> Iterator[tuple[Vipkeeper, Vipkeeper]]:
    """Both directors running the same configuration; d1 (priority 150) the Master, serving."""
    d1 = net.start_vipkeeper("d1", director_config(priority=150))
    d2 = net.start_vipkeeper("d2", director_config(priority=100))
    wait_master(d1, [d2], ELECTION)
    poll(ELECTION, lambda: _assert_equal(pool(net, "d1"), {RS1, RS2}), [d1, d2])
    yield d1, d2
    for daemon in (d1, d2):
        if daemon.process.returncode != -9:  # not hard-failed by the test
            assert daemon.stop() == 0, daemon.log()


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected, f"{actual} != {expected}"


def test_dr_daemons_spread_requests_and_replies_bypass_the_director(
    net: LbNet, directors: tuple[Vipkeeper, Vipkeeper]
):
    d1, d2 = directors
    net.count_dr_paths(("d1", "d2"))
    # The switch floods every frame for d1 to all ports (no learning on d1's port), as a
    # switch does for an unknown MAC: the Backup sees them all and must not forward any.
    port = net.port("d1", "fe0")
    net.run("sw", "bridge", "link", "set", "dev", port, "learning", "off")
    net.run("sw", "bridge", "fdb", "del", net.mac("d1", "fe0"), "dev", port, "master")
    net.count_ingress("d2", "fe0", {"to_vip": f"ip daddr {VIP} tcp dport 80"}, "flooded")
    client = net.client()
    before_d2 = forwarded(net, "d2")

    seen = counts(client, 40)

    assert set(seen) == {"rs1", "rs2"}, seen
    net.assert_direct_return(seen, ("d1", "d2"))
    # the Master forwarded every request (>= 3 packets per connection), the Backup none
    assert forwarded(net, "d1") >= 3 * 40
    assert net.counter("d2", "netdev", "flooded", "to_vip") >= 3 * 40  # it saw them all
    assert forwarded(net, "d2") == before_d2 == 0
    assert (d1.states()[-1], d2.states()[-1]) == ("MASTER", "BACKUP")


@pytest.mark.parametrize(
    ("dies", "checker", "stays"),
    [("rs1", "HTTP_GET", "rs2"), ("rs2", "TCP_CHECK", "rs1")],
)
def test_real_server_whose_http_dies_leaves_the_pool_within_the_bound_and_comes_back(
    net: LbNet, directors: tuple[Vipkeeper, Vipkeeper], dies: str, checker: str, stays: str
):
    d1, d2 = directors
    address = {"rs1": RS1, "rs2": RS2}
    client = net.client()
    serving(client, {"rs1", "rs2"}, within=5)

    killed_at = time.time()
    net.stop_http(dies)

    def reported_down(daemon: Vipkeeper) -> dict[str, object]:
        lines = daemon.messages(f"real server {address[dies]} is down")
        assert lines, f"{daemon!r}: no down report yet"
        return lines[0]

    for daemon in (d1, d2):  # both directors check; both must agree
        line = poll(DETECTION_BOUND + MARGIN, lambda d=daemon: reported_down(d), [d1, d2])
        took = log_time(str(line["ts"])) - killed_at
        assert took <= DETECTION_BOUND + MARGIN, f"{checker} detection took {took:.2f}s"
        print(f"{checker} {dies} down in {daemon.host.name} after {took:.2f}s")
    poll(MARGIN, lambda: _assert_equal(pool(net, "d1"), {address[stays]}), [d1])
    poll(MARGIN, lambda: _assert_equal(pool(net, "d2"), {address[stays]}), [d2])

    # from now on not one request fails, and all reach the remaining server
    assert counts(client, 50) == {stays: 50}

    net.start_http(dies)
    poll(DETECTION_BOUND + MARGIN,
         lambda: _assert_equal(pool(net, "d1"), {RS1, RS2}), [d1])  # fmt: skip
    assert d1.messages(f"real server {address[dies]} is up")
    assert set(counts(client, 40)) == {"rs1", "rs2"}


def test_keepalive_sessions_survive_a_hard_failure_of_the_master(
    net: LbNet, directors: tuple[Vipkeeper, Vipkeeper]
):
    d1, d2 = directors
    client = net.client()
    # The 4-tuple hash places each connection: 8 of them all land on one server once in 128
    # runs, so open more (up to 24) until each server holds at least 3.
    owners: dict[int, str] = {}
    for conn in range(24):
        owners[conn] = client.start_session(conn, interval=0.05)
        per_server = Counter(owners.values())
        if len(owners) >= 8 and min(per_server["rs1"], per_server["rs2"]) >= 3:
            break
    assert set(owners.values()) == {"rs1", "rs2"}, owners  # flows on both real servers
    poll(5, lambda: _assert_equal(min(client.session_count(c) for c in owners) >= 10, True))
    d2_mac = net.mac("d2", "fe0")
    d2_before = forwarded(net, "d2")

    net.hard_fail("d1")
    failed_at = time.monotonic()

    wait_master(d2, [], ELECTION)

    def client_follows_d2() -> None:
        neigh = json.loads(net.run("cli", "ip", "-j", "neigh", "show", "to", VIP))
        assert neigh and neigh[0].get("lladdr") == d2_mac, neigh

    poll(5, client_follows_d2, [d2])  # moved by d2's gratuitous ARP
    counted = {conn: client.session_count(conn) for conn in owners}

    def every_session_moves_on() -> None:
        for conn, count in counted.items():
            assert client.session_count(conn) >= count + 10, f"session {conn} is stalled"

    # TCP retransmits back off exponentially: a few seconds after the takeover at worst
    poll(15, every_session_moves_on, [d2])
    outage = time.monotonic() - failed_at
    sessions = {conn: client.stop_session(conn) for conn in owners}

    for conn, session in sessions.items():
        assert session.errors == [], f"session {conn}: {session.errors}"  # no reset, no timeout
        # no request lost and no flow moved: the same real server answered every request
        assert set(session.bodies) == {owners[conn]}, f"session {conn} changed server"
        assert session.max_gap < outage + 1, f"session {conn} stalled {session.max_gap:.1f}s"
    assert forwarded(net, "d2") > d2_before
    gaps = sorted(round(session.max_gap, 2) for session in sessions.values())
    print(f"hard failover: longest pause per session {gaps}s")
    assert "MASTER" in d2.states()
    # d1 was killed, not stopped: the fixture's SIGTERM finds it gone
    d1.process.wait(timeout=5)
    assert d1.process.returncode == -9


def test_nat_mode_with_the_daemons_and_a_floating_gateway(tmp_path: Path):
    gateway = "192.168.0.1"
    with LbNet(tmp_path, nat=True) as net:
        for name in ("rs1", "rs2"):
            # the real servers answer through whichever director is Master
            net.run(name, "ip", "route", "replace", "default", "via", gateway)
        extra = [f"{gateway}/24 dev srv0"]
        d1 = net.start_vipkeeper("d1", director_config(priority=150, lb_kind="NAT",
                                                       extra_vips=extra))  # fmt: skip
        d2 = net.start_vipkeeper("d2", director_config(priority=100, lb_kind="NAT",
                                                       extra_vips=extra))  # fmt: skip
        wait_master(d1, [d2], ELECTION)
        poll(ELECTION, lambda: _assert_equal(nat_pool(net, "d1"), {RS1, RS2}), [d1, d2])
        for name in ("rs1", "rs2"):
            net.count_ingress(name, "srv0", {"from_client": f"ip saddr {CLIENT_IP} ip daddr "
                                      f"{net.servers[name][1]} tcp dport 80"})  # fmt: skip
        client = net.client()
        serving(client, {"rs1", "rs2"}, within=5)
        for name in ("rs1", "rs2"):
            # translated to the real server's address, the client's address kept
            assert net.counter(name, "netdev", "probe", "from_client") > 0

        # the Backup takes the service over (VIP and gateway) after a graceful stop
        assert d1.stop() == 0, d1.log()
        wait_master(d2, [], ELECTION)
        serving(client, {"rs1", "rs2"}, within=5)
        assert d2.stop() == 0, d2.log()


def test_quorum_loss_switches_to_the_sorry_server_and_back(tmp_path: Path):
    with LbNet(tmp_path, sorry=True) as net:
        config = director_config(priority=150, quorum=2, sorry_server="192.168.0.56")
        d1 = net.start_vipkeeper("d1", config)
        wait_master(d1, [], ELECTION)
        poll(ELECTION, lambda: _assert_equal(pool(net, "d1"), {RS1, RS2}), [d1])
        client = net.client()
        serving(client, {"rs1", "rs2"}, within=5)

        net.stop_http("rs1")
        # quorum 2 with weights 1 + 1: one server down already loses quorum
        poll(DETECTION_BOUND + MARGIN, lambda: _assert_equal(pool(net, "d1"), {SORRY}), [d1])
        assert d1.messages("quorum lost")
        assert counts(client, 20) == {"sorry": 20}
        net.stop_http("rs2")
        assert counts(client, 20) == {"sorry": 20}

        net.start_http("rs1")
        net.start_http("rs2")
        poll(DETECTION_BOUND + MARGIN,
             lambda: _assert_equal(pool(net, "d1"), {RS1, RS2}), [d1])  # fmt: skip
        assert d1.messages("quorum gained")
        serving(client, {"rs1", "rs2"}, within=2)
        assert d1.stop() == 0, d1.log()
