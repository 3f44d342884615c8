"""`vipkeeper run` on the real kernel's IPVS: two directors, three real servers, one topology.

The daemons choose IPVS by themselves (`lvs_backend` is left at auto and the guest has ip_vs
loaded) and everything is read back with `ipvsadm` or seen by a client. Python is slow in the
emulated guest, so the module builds one topology and starts each daemon once; the tests run in
file order and each leaves the lab as the next expects (a failure can cascade; the first
failure is the one to read).

Proves:
- the kernel holds exactly the configured services: schedulers rr, wrr, lc, wlc, sh (with and
  without sh-port), mh (with and without mh-port), weights, DR ("Route") and NAT ("Masq"),
  persistence; both directors hold the same table;
- DR and NAT traffic through the Master: a DR real server receives packets addressed to the VIP
  and answers the client from its own MAC, no reply passes a director; persistence_timeout
  holds the client on one real server where rr without it alternates;
- a failed health check (the server refuses connections) sets weight 0 (inhibit_on_failure) or
  removes the server, quorum loss switches to the sorry server (held at weight 0 while idle, by
  sorry_server_inhibit), and all of it comes back when the server does; keep-alive connections
  opened before to the healthy server keep it through the reweight, through quorum loss (its
  real servers held at weight 0 by inhibit_on_failure: new connections go to the sorry server,
  the established one stays) and through the recovery;
- removing a virtual server from the configuration and reloading removes it from the kernel;
- a hard failure of the Master loses no request of a keep-alive connection sending every 100 ms,
  first with mh + sloppy_tcp (no state shared), then with lvs_sync_daemon (sloppy_tcp off, so
  only the synchronised connection table can carry it); the sync threads
  follow the VRRP state (Master thread on the Master, Backup thread on the Backup);
- `vipkeeper check` and the log name the IPVS data plane; stop leaves no service and no sync
  thread behind, and with `--dont-release-ipvs` it leaves the services.
"""

from __future__ import annotations

import io
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence

import ipvsadm
import pytest
from guestnet import GATEWAY, GUEST_BOUND, VIPS, GuestNet, artifacts, poll

from vipkeeper.config.check import run_check
from vipkeeper.director import describe_data_plane
from vipkeeper.testing.daemons import Vipkeeper
from vipkeeper.testing.lbnet import Client

VIP, VIP_PERSIST, VIP_SORRY, VIP_RR = VIPS
RS1, RS2, SORRY = "192.168.0.54", "192.168.0.55", "192.168.0.56"
NAT_PORT = 8080
# port -> (lb_algo, scheduler flag lines): services without checkers, on the first VIP.
MATRIX = {
    1001: ("lc", ()),
    1002: ("wlc", ()),
    1003: ("sh", ("sh-port",)),
    1004: ("sh", ()),
    1005: ("mh", ()),
}
SYNC_ID = 5
# Seconds a request on one of the client's keep-alive connections may take in the guest.
CLIENT_TIMEOUT = 60
# Seconds between checks of one real server: each check costs the emulated CPU dearly.
DELAY_LOOP = 3


def _check(kind: str, timeout: float) -> list[str]:
    timing = [f"connect_timeout {timeout:g}", "retry 1", "delay_before_retry 1"]
    if kind == "HTTP_GET":
        return ["HTTP_GET {", "url {", "path /whoami", "status_code 200", "}", *timing, "}"]
    return ["TCP_CHECK {", *timing, "}"]


def _real(address: str, port: int, weight: int, check: str | None, *extra: str) -> list[str]:
    return [
        f"real_server {address} {port} {{",
        f"weight {weight}",
        *extra,
        *(_check(check, 5) if check else []),
        "}",
    ]


def director_config(
    *, priority: int, matrix: Sequence[int] = tuple(MATRIX), sync: bool = False
) -> str:
    """Both directors' keepalived.conf; `matrix` picks the scheduler-matrix services kept."""
    lines = ["global_defs {", "router_id director"]
    if sync:
        lines.append(f"lvs_sync_daemon srv0 VI_LB id {SYNC_ID}")
    lines += ["}", "vrrp_instance VI_LB {", "state BACKUP", "interface fe0",
              "virtual_router_id 61", f"priority {priority}", "advert_int 1",
              "virtual_ipaddress {", *(f"{vip}/16 dev fe0" for vip in VIPS),
              f"{GATEWAY}/24 dev srv0", "}", "}"]  # fmt: skip
    # mh + mh-port: flows spread by source port, and every director maps a flow alike.
    lines += [f"virtual_server {VIP} 80 {{", f"delay_loop {DELAY_LOOP}", "lb_algo mh", "mh-port",
              "lb_kind DR", "protocol TCP",
              *_real(RS1, 80, 3, "HTTP_GET"),
              *_real(RS2, 80, 1, "TCP_CHECK", "inhibit_on_failure"), "}"]  # fmt: skip
    lines += [f"virtual_server {VIP_PERSIST} 80 {{", f"delay_loop {DELAY_LOOP}", "lb_algo rr",
              "lb_kind DR", "protocol TCP", "persistence_timeout 50",
              *_real(RS1, 80, 1, "TCP_CHECK"), *_real(RS2, 80, 1, "TCP_CHECK"), "}"]  # fmt: skip
    lines += [f"virtual_server {VIP_SORRY} 80 {{", f"delay_loop {DELAY_LOOP}", "lb_algo wrr",
              "lb_kind DR", "protocol TCP", "quorum 2", f"sorry_server {SORRY} 80",
              "sorry_server_inhibit",
              *_real(RS1, 80, 1, "TCP_CHECK", "inhibit_on_failure"),
              *_real(RS2, 80, 1, "TCP_CHECK", "inhibit_on_failure"), "}"]  # fmt: skip
    lines += [f"virtual_server {VIP_RR} 80 {{", "lb_algo rr", "lb_kind DR", "protocol TCP",
              *_real(RS1, 80, 1, None), *_real(RS2, 80, 1, None), "}"]  # fmt: skip
    lines += [f"virtual_server {VIP} {NAT_PORT} {{", "lb_algo wrr", "lb_kind NAT",
              "protocol TCP", *_real(RS1, 80, 1, None), *_real(RS2, 80, 1, None), "}"]  # fmt: skip
    for port in matrix:
        algo, flags = MATRIX[port]
        lines += [f"virtual_server {VIP} {port} {{", f"lb_algo {algo}", *flags,
                  "lb_kind DR", "protocol TCP",
                  *_real(RS1, port, 2, None), *_real(RS2, port, 1, None), "}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def expected_table(
    matrix: Sequence[int] = tuple(MATRIX),
) -> dict[str, tuple[str, frozenset[str], int | None, dict[str, tuple[str, int]]]]:
    """What `ipvsadm -Ln` must show with every real server healthy."""

    def both(forward: str, port: int, w1: int, w2: int) -> dict[str, tuple[str, int]]:
        return {f"{RS1}:{port}": (forward, w1), f"{RS2}:{port}": (forward, w2)}

    table = {
        f"TCP {VIP}:80": ("mh", frozenset({"mh-port"}), None, both("Route", 80, 3, 1)),
        f"TCP {VIP_PERSIST}:80": ("rr", frozenset(), 50, both("Route", 80, 1, 1)),
        # sorry_server_inhibit: the idle sorry server is listed at weight 0
        f"TCP {VIP_SORRY}:80": (
            "wrr",
            frozenset(),
            None,
            {**both("Route", 80, 1, 1), f"{SORRY}:80": ("Route", 0)},
        ),
        f"TCP {VIP_RR}:80": ("rr", frozenset(), None, both("Route", 80, 1, 1)),
        f"TCP {VIP}:{NAT_PORT}": ("wrr", frozenset(), None, both("Masq", 80, 1, 1)),
    }
    for port in matrix:
        algo, flags = MATRIX[port]
        table[f"TCP {VIP}:{port}"] = (algo, frozenset(flags), None, both("Route", port, 2, 1))
    return table


def summary(
    netns: str,
) -> dict[str, tuple[str, frozenset[str], int | None, dict[str, tuple[str, int]]]]:
    return {
        key: (s.scheduler, s.flags, s.persistent, s.destinations)
        for key, s in ipvsadm.table(netns).items()
    }


class Directors:
    """The two daemons of the module, by director name."""

    def __init__(self, net: GuestNet) -> None:
        self.net = net
        self.daemons: dict[str, Vipkeeper] = {}

    def start(self, director: str, config: str, *extra_args: str) -> Vipkeeper:
        self.daemons[director] = self.net.start_vipkeeper(director, config, extra_args=extra_args)
        return self.daemons[director]

    def all(self) -> list[Vipkeeper]:
        return list(self.daemons.values())


@pytest.fixture(scope="module")
def net() -> Iterator[GuestNet]:
    workdir = artifacts() / "ipvs-daemon"
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    with GuestNet(workdir) as built:
        yield built


@pytest.fixture(scope="module")
def directors(net: GuestNet) -> Iterator[Directors]:
    pair = Directors(net)
    pair.start("d1", director_config(priority=150))
    pair.start("d2", director_config(priority=100))
    try:
        yield pair
    finally:
        for daemon in pair.all():
            daemon.stop()


@pytest.fixture(scope="module")
def client(net: GuestNet) -> Client:
    """One keep-alive client child for the module (each Python start costs minutes here)."""
    return net.client()


def wait_master(net: GuestNet, pair: Directors, director: str) -> None:
    def holds() -> None:
        holders = [d for d in ("d1", "d2") if d in pair.daemons and net.holds_vip(d)]
        assert holders == [director], f"VIP held by {holders}, expected {director}"

    poll(holds, daemons=pair.all())


def test_daemons_choose_ipvs_and_the_kernel_holds_the_configured_services(
    net: GuestNet, directors: Directors
) -> None:
    wait_master(net, directors, "d1")
    expected = expected_table()
    for director in ("d1", "d2"):

        def installed(director: str = director) -> None:
            assert summary(net.ns(director)) == expected

        poll(installed, daemons=directors.all())
        assert directors.daemons[director].messages("on the ipvs data plane"), director


def test_check_names_the_ipvs_data_plane(directors: Directors) -> None:
    # `vipkeeper check`'s own code path, in this process: a new interpreter costs minutes here.
    out = io.StringIO()
    path = str(directors.daemons["d1"].config_path)
    assert run_check(path, out, describe=describe_data_plane) == 0
    assert "LVS data plane ipvs (auto: this kernel has IPVS)" in out.getvalue(), out.getvalue()


def test_dr_and_nat_traffic_through_the_master(net: GuestNet, directors: Directors) -> None:
    net.count_dr_paths(("d1", "d2"), vip=VIP_RR)
    seen = Counter(net.curl(VIP_RR) for _ in range(4))
    assert seen == {"rs1": 2, "rs2": 2}
    net.assert_direct_return(seen, ("d1", "d2"))  # DR: to the real server, back past the directors
    assert {net.curl(VIP) for _ in range(2)} <= {"rs1", "rs2"}
    # NAT: wrr with equal weights alternates; the replies return through the Master
    assert Counter(net.curl(VIP, NAT_PORT) for _ in range(4)) == {"rs1": 2, "rs2": 2}
    assert f"{VIP}:{NAT_PORT}" in net.run("d1", "ipvsadm", "-Lnc")
    assert f"{VIP_RR}:80" not in net.run("d2", "ipvsadm", "-Lnc")  # the Backup forwards nothing


def test_persistence_holds_the_client_on_one_server(net: GuestNet, directors: Directors) -> None:
    alternating = [net.curl(VIP_RR) for _ in range(4)]
    assert Counter(alternating) == {"rs1": 2, "rs2": 2}, alternating
    held = [net.curl(VIP_PERSIST) for _ in range(6)]
    assert len(set(held)) == 1, held


def test_failed_check_inhibits_removes_and_quorum_goes_to_the_sorry_server(
    net: GuestNet, directors: Directors, client: Client
) -> None:
    # Keep-alive connections to rs1, opened before rs2 fails: on the mh service (rs2 only
    # reweighted to 0 there) and on the quorum service (where rs1 itself is held at weight 0
    # while the sorry server takes new connections); both keep their real server. (A real
    # server removed from an IPVS service loses its established connections: the kernel drops
    # their packets. inhibit_on_failure is what keeps them.)
    on_mh = open_on(client, 10, VIP, "rs1")
    on_quorum = open_on(client, 30, VIP_SORRY, "rs1")
    net.refuse_http("rs2")
    try:
        degrade_and_check_the_sorry_server(net, directors)
        assert client.get_on(on_mh) == "rs1"
        assert client.get_on(on_quorum) == "rs1"
    finally:
        net.accept_http("rs2")

    def recovered() -> None:
        assert summary(net.ns("d1")) == expected_table()

    poll(recovered, daemons=directors.all())
    # rs2 back at weight 1 and rs1 back in the quorum service: the connections still answer
    assert client.get_on(on_mh) == "rs1"
    assert client.get_on(on_quorum) == "rs1"


def open_on(client: Client, first: int, vip: str, server: str, tries: int = 12) -> int:
    """Open keep-alive connections `first`, `first + 1`, ... to `vip`:80 until `server`
    answers one: that connection's id."""
    answered = []
    for conn in range(first, first + tries):
        client.open(conn, host=vip, timeout=CLIENT_TIMEOUT)
        answered.append(client.get_on(conn))
        if answered[-1] == server:
            return conn
    raise AssertionError(f"{tries} connections to {vip}:80, none to {server}: {answered}")


def degrade_and_check_the_sorry_server(net: GuestNet, directors: Directors) -> None:
    def degraded() -> None:
        held = ipvsadm.table(net.ns("d1"))
        assert held[f"TCP {VIP}:80"].weights() == {f"{RS1}:80": 3, f"{RS2}:80": 0}
        assert held[f"TCP {VIP_PERSIST}:80"].weights() == {f"{RS1}:80": 1}
        # quorum lost: the real servers (inhibit_on_failure) stay at weight 0, so their
        # established connections go on; the sorry server alone takes new ones
        assert held[f"TCP {VIP_SORRY}:80"].weights() == {
            f"{RS1}:80": 0,
            f"{RS2}:80": 0,
            f"{SORRY}:80": 1,
        }

    poll(degraded, daemons=directors.all())
    assert {net.curl(VIP_SORRY) for _ in range(3)} == {"sorry"}


def test_reload_removes_a_virtual_server_from_the_kernel(
    net: GuestNet, directors: Directors
) -> None:
    kept = tuple(port for port in MATRIX if port != 1005)
    for director, priority in (("d1", 150), ("d2", 100)):
        daemon = directors.daemons[director]
        daemon.config_path.write_text(director_config(priority=priority, matrix=kept))
        daemon.process.send_signal(signal.SIGHUP)
    for director in ("d1", "d2"):

        def reloaded(director: str = director) -> None:
            assert summary(net.ns(director)) == expected_table(kept)

        poll(reloaded, daemons=directors.all())


def keepalive_through_failover(
    net: GuestNet, pair: Directors, client: Client, session: int, old: str, new: str
) -> list[str]:
    """A keep-alive session on the VIP every 100 ms while `old` is hard-failed; its answers."""
    first = client.start_session(session, interval=0.1, timeout=120)
    # Enough traffic first that the sync daemon (threshold: 3 packets) has sent the connection.
    poll(lambda: _at_least(client.session_count(session), 30), daemons=pair.all())
    net.hard_fail(old)
    del pair.daemons[old]
    wait_master(net, pair, new)
    before = client.session_count(session)
    poll(lambda: _at_least(client.session_count(session), before + 20), daemons=pair.all())
    result = client.stop_session(session)
    assert result.errors == [], result.errors
    return [first, *result.bodies]


def _at_least(count: int, wanted: int) -> None:
    assert count >= wanted, f"{count} answers so far, waiting for {wanted}"


def test_mh_with_sloppy_tcp_survives_a_hard_failover(
    net: GuestNet, directors: Directors, client: Client
) -> None:
    bodies = keepalive_through_failover(net, directors, client, 1, "d1", "d2")
    assert len(set(bodies)) == 1, Counter(bodies)  # the same real server throughout


def test_sync_daemon_carries_connections_across_a_hard_failover(
    net: GuestNet, directors: Directors, client: Client
) -> None:
    for director in ("d1", "d2"):
        net.sysctl(director, **{"net.ipv4.vs.sloppy_tcp": "0"})
    d2 = directors.daemons["d2"]
    d2.config_path.write_text(director_config(priority=100, sync=True))
    d2.process.send_signal(signal.SIGHUP)
    poll(lambda: _equal(net.sync_daemons("d2"), ["master"]), daemons=directors.all())
    net.restore("d1")
    directors.start("d1", director_config(priority=150, sync=True))
    wait_master(net, directors, "d1")
    poll(lambda: _equal(net.sync_daemons("d1"), ["master"]), daemons=directors.all())
    poll(lambda: _equal(net.sync_daemons("d2"), ["backup"]), daemons=directors.all())
    # sloppy_tcp is off: the new Master forwards the connection only because it was synced.
    bodies = keepalive_through_failover(net, directors, client, 2, "d1", "d2")
    assert len(set(bodies)) == 1, Counter(bodies)
    poll(lambda: _equal(net.sync_daemons("d2"), ["master"]), daemons=directors.all())


def _equal(found: object, wanted: object) -> None:
    assert found == wanted, f"{found} != {wanted}"


def test_stop_leaves_no_ipvs_service_or_sync_thread(net: GuestNet, directors: Directors) -> None:
    assert ipvsadm.table(net.ns("d2")) != {}
    assert directors.daemons["d2"].stop(timeout=GUEST_BOUND) == 0
    assert ipvsadm.table(net.ns("d2")) == {}
    assert net.sync_daemons("d2") == []


def test_stop_with_dont_release_ipvs_leaves_the_services(
    net: GuestNet, directors: Directors
) -> None:
    net.run("d1", "ipvsadm", "-C")  # what the hard-failed daemon left behind
    assert ipvsadm.table(net.ns("d1")) == {}
    net.restore("d1")
    d1 = directors.start("d1", director_config(priority=150), "--dont-release-ipvs")

    def installed() -> None:
        assert summary(net.ns("d1")) == expected_table()

    poll(installed, daemons=directors.all())
    assert d1.stop(timeout=GUEST_BOUND) == 0
    assert summary(net.ns("d1")) == expected_table()
    assert d1.messages("left on the ipvs data plane (--dont-release-ipvs)")
