"""Operating running daemons in namespaces: `vipkeeper status`, `status --json`, `reload`, /metrics.

Proves, against two real directors on the load-balancing lab (vipkeeper.testing.lbnet):
- `status --json` validates against docs/status.schema.json and says who is MASTER, that the VIP
  is present there and absent on the BACKUP, and that both real servers are up with a last
  check; the human table shows the same; /metrics has keepalived-exporter's state 2 / 1 on the
  VIP and vipkeeper's real-server metrics;
- after a graceful failover the BACKUP's status and metrics move as they must (MASTER, one
  become_master, a priority-0 advert received, a transition with its reason);
- bad input on the control socket: garbage, an oversized request and a half-open connection
  each get their error answer while `vipkeeper status` is served meanwhile; a non-root user is
  kept out by the socket's mode, and refused by SO_PEERCRED when the mode would let it in;
  every refusal is counted in /metrics;
- `vipkeeper reload` prints the change and exits 0; a configuration with errors is refused with
  file:line:column, exit 1, the old configuration stays in force, and status shows it;
- under traffic on the nftables data plane (LVS-NAT, and LVS-DR with its flow tables; keep-alive
  sessions and new connections throughout), 20 reloads (unchanged file, priority change on
  another instance, VIP added and removed, real server added and removed, health-check change)
  cost zero failed requests, zero moved keep-alive connections and zero transitions, and each
  reload reports exactly the expected change, in its answer, in status and in the log.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vipkeeper import control
from vipkeeper.testing.lbnet import VIP, LbNet, Vipkeeper, director_config
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns


SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "status.schema.json").read_text())
VIPKEEPER = Path(sys.executable).parent / "vipkeeper"
METRICS_PORT = 9650
ELECTION = 8.0  # advert_int 1: Master_Down_Interval, the first advert and the first nft apply
STARTUP = 20.0  # a daemon's process start on a loaded machine, then ELECTION
CHECKS = 6.0  # delay_loop 1 with its warm-up, connect_timeout 1: both real servers checked
NOBODY = 65534


def cli(*argv: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(VIPKEEPER), *argv]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def status(daemon: Vipkeeper) -> dict[str, Any]:
    try:
        document = control.request(str(daemon.control_socket), "status", timeout=10)
    except control.ControlError as error:  # not serving yet: a condition to poll for
        raise AssertionError(f"{daemon!r}: {error}") from error
    jsonschema.validate(document, SCHEMA)
    return document


def instance(document: dict[str, Any], name: str = "VI_LB") -> dict[str, Any]:
    return next(item for item in document["instances"] if item["name"] == name)


def scrape(net: LbNet, director: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = net.run(director, "curl", "-sf", f"http://127.0.0.1:{METRICS_PORT}/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:  # fmt: skip
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LbNet, Vipkeeper, Vipkeeper]]:
    with LbNet(tmp_path) as net:
        metrics = ["--metrics-listen", f"127.0.0.1:{METRICS_PORT}"]
        d1 = net.start_vipkeeper("d1", director_config(priority=150), extra_args=metrics)
        d2 = net.start_vipkeeper("d2", director_config(priority=100), extra_args=metrics)
        yield net, d1, d2


def _both_servers_checked(document: dict[str, Any]) -> None:
    (vs,) = document["virtual_servers"]
    assert [(rs["address"], rs["health"], rs["in_pool"]) for rs in vs["real_servers"]] == [
        ("192.168.0.54", "up", True),
        ("192.168.0.55", "up", True),
    ]
    assert all(rs["last_check"] is not None for rs in vs["real_servers"])


def test_status_and_metrics_before_and_after_a_failover(
    pair: tuple[LbNet, Vipkeeper, Vipkeeper],
) -> None:
    net, d1, d2 = pair
    daemons = [d1, d2]
    poll(STARTUP, lambda: _assert(instance(status(d1))["state"] == "MASTER"), daemons)
    poll(STARTUP, lambda: _assert(instance(status(d2))["state"] == "BACKUP"), daemons)
    poll(CHECKS, lambda: _both_servers_checked(status(d1)), daemons)
    # The Backup learns the Master's address from the first advert it accepts after it started.
    poll(ELECTION, lambda: _assert(instance(status(d2))["master_address"] is not None), daemons)

    master, backup = instance(status(d1)), instance(status(d2))
    assert master["vips"] == [{"address": VIP, "prefixlen": 16, "dev": "fe0", "present": True}]
    assert backup["vips"][0]["present"] is False
    assert master["master_address"] == "172.16.0.53" == backup["master_address"]
    assert master["last_transition"]["to"] == "MASTER"
    assert backup["adverts"]["received"] > 0
    # (d2 may have been Master for a moment if d1's process started late on a loaded machine.)
    became_before = backup["became_master"]
    shown = cli("status", "--control-socket", str(d1.control_socket))
    assert shown.returncode == 0, shown.stderr
    assert "VI_LB" in shown.stdout and "MASTER" in shown.stdout
    assert "192.168.0.55:80" in shown.stdout

    client = net.client()
    for _ in range(4):
        client.get()
    before = scrape(net, "d1")
    assert metric(before, "keepalived_up") == 1
    forwarded = [
        value
        for (name, _), value in before.items()
        if name == "vipkeeper_real_server_packets_total"
    ]
    assert len(forwarded) == 2 and sum(forwarded) >= 4, forwarded
    assert metric(before, "keepalived_vrrp_state", iname="VI_LB", ip_address=VIP) == 2
    backup_samples = scrape(net, "d2")
    assert metric(backup_samples, "keepalived_vrrp_state", ip_address=VIP) == 1
    transition = {"iname": "VI_LB", "state": "MASTER", "cause": "master_down"}
    taken_over_before = sum(
        value
        for (name, labels), value in backup_samples.items()
        if name == "vipkeeper_vrrp_transitions_total" and set(transition.items()) <= labels
    )
    rs = {"local_address": VIP, "local_port": "80", "proto": "TCP",
          "remote_address": "192.168.0.55", "remote_port": "80"}  # fmt: skip
    assert metric(before, "vipkeeper_real_server_up", **rs) == 1
    assert metric(before, "vipkeeper_real_server_check_duration_seconds_count", **rs) >= 1

    stopped_at = time.time()
    assert d1.stop() == 0, d1.log()
    poll(ELECTION, lambda: _assert(instance(status(d2))["state"] == "MASTER"), [d2])
    after = instance(status(d2))
    assert after["became_master"] == became_before + 1
    assert after["adverts"]["priority_zero_received"] >= 1
    assert after["vips"][0]["present"] is True
    assert after["last_transition"]["from"] == "BACKUP"
    assert after["last_transition"]["reason"] == "master down timer expired"
    assert after["last_transition"]["time"] >= stopped_at
    samples = scrape(net, "d2")
    assert metric(samples, "keepalived_vrrp_state", ip_address=VIP) == 2
    assert metric(samples, "keepalived_become_master_total", iname="VI_LB") == became_before + 1
    assert metric(samples, "keepalived_priority_zero_received_total", iname="VI_LB") >= 1
    taken_over = metric(samples, "vipkeeper_vrrp_transitions_total", **transition)
    assert taken_over == taken_over_before + 1


def _assert(condition: bool) -> None:
    assert condition


def _raw(path: Path, payload: bytes, *, half_close: bool = True) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(str(path))
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return dict(json.loads(answer))


def test_bad_requests_and_strangers_never_stall_the_daemon(
    tmp_path: Path, shared_dir: Path
) -> None:
    sock = shared_dir / "vipkeeper.sock"
    with LbNet(tmp_path) as net:
        d1 = net.start_vipkeeper(
            "d1",
            director_config(priority=150),
            control_socket=sock,
            extra_args=["--metrics-listen", f"127.0.0.1:{METRICS_PORT}"],
        )
        poll(STARTUP, lambda: _assert(instance(status(d1))["state"] == "MASTER"), [d1])
        assert oct(sock.stat().st_mode & 0o777) == oct(control.SOCKET_MODE)

        assert _raw(sock, b"\x16\x03\x01\x02\x00 hello?\n")["error"]["code"] == "malformed"
        huge = b'{"version": 1, "command": "status", "pad": "' + b"x" * 100_000 + b'"}\n'
        assert _raw(sock, huge)["error"]["code"] == "oversized"

        # A client that sends half a request and waits: others are served meanwhile.
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.settimeout(15)
        stalled.connect(str(sock))
        stalled.sendall(b'{"version": 1, "comm')
        jsonschema.validate(control.read_status(str(sock), timeout=10), SCHEMA)
        # ... served while the stalled request still waits for its deadline (2 s).
        assert select.select([stalled], [], [], 0)[0] == [], "the stalled client was answered first"
        shown = cli("status", "--json", "--control-socket", str(sock))
        assert shown.returncode == 0, shown.stderr
        jsonschema.validate(json.loads(shown.stdout), SCHEMA)
        late = json.loads(stalled.makefile("rb").readline())
        stalled.close()
        assert late["error"]["code"] == "timeout"

        # Another user: kept out by the socket's mode ...
        denied = cli("status", "--control-socket", str(sock), user=NOBODY)
        assert denied.returncode == 2
        assert "Permission denied" in denied.stderr
        # ... and refused by SO_PEERCRED if the mode ever let it in.
        sock.chmod(0o666)
        refused = cli("status", "--control-socket", str(sock), user=NOBODY)
        assert refused.returncode == 1
        assert f"uid {NOBODY} may not use this socket" in refused.stderr

        samples = scrape(net, "d1")
        for code in ("malformed", "oversized", "timeout", "forbidden"):
            assert metric(samples, "vipkeeper_control_errors_total", code=code) == 1, code
        assert d1.running() and instance(status(d1))["state"] == "MASTER"
        assert d1.stop() == 0, d1.log()
        assert not sock.exists()


def test_reload_prints_changes_and_refuses_a_broken_file(
    pair: tuple[LbNet, Vipkeeper, Vipkeeper],
) -> None:
    net, d1, d2 = pair
    poll(STARTUP, lambda: _assert(instance(status(d1))["state"] == "MASTER"), [d1, d2])
    socket_option = ["--control-socket", str(d1.control_socket)]

    d1.config_path.write_text(director_config(priority=140))
    applied = cli("reload", *socket_option)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["configuration reloaded:", "  changed instance VI_LB"]
    document = status(d1)
    assert instance(document)["priority"] == 140
    assert instance(document)["state"] == "MASTER"
    assert document["last_reload"]["result"] == "applied"

    checksum = document["config"]["sha256"]
    d1.config_path.write_text(director_config(priority=140) + "vrrp_instance {\n")
    refused = cli("reload", *socket_option)
    assert refused.returncode == 1
    assert "running configuration stays in force" in refused.stdout
    assert f"{d1.config_path}:" in refused.stdout
    document = status(d1)
    assert document["last_reload"]["result"] == "refused"
    assert document["last_reload"]["errors"][0].startswith(f"{d1.config_path}:")
    assert document["config"]["sha256"] == checksum
    assert instance(document)["state"] == "MASTER"
    assert instance(document)["vips"][0]["present"] is True
    samples = scrape(net, "d1")
    assert metric(samples, "vipkeeper_reloads_total", result="refused") == 1
    assert metric(samples, "vipkeeper_last_reload_success") == 0

    unreachable = cli("reload", "--control-socket", str(net.workdir / "nobody-here.sock"))
    assert unreachable.returncode == 2


# -- reload under traffic ----------------------------------------------------------------------

GATEWAY = "192.168.0.1"
OTHER_VIP = "172.16.9.2"
ADDED_VIP = "172.16.9.3"
ADDED_SERVER = "192.168.0.56"  # lbnet's third server
NAT_EXTRA = [f"{GATEWAY}/24 dev srv0"]


def _traffic_config(
    *,
    lb_kind: str,
    lb_priority: int,
    other_priority: int,
    added_vip: bool = False,
    added_server: bool = False,
    timeout: float = 1,
) -> str:
    """Two instances (VI_LB with the VIP, and for NAT the servers' gateway; VI_OTHER beside it)
    and a virtual server; the knobs are what the reloads change."""
    servers = ["192.168.0.54", "192.168.0.55", *([ADDED_SERVER] if added_server else [])]
    text = director_config(
        priority=lb_priority,
        lb_kind=lb_kind,
        real_servers=servers,
        global_lines=["lvs_backend nftables"],  # the data plane under test, IPVS or not
        extra_vips=[
            *(NAT_EXTRA if lb_kind == "NAT" else []),
            *([f"{ADDED_VIP}/16 dev fe0"] if added_vip else []),
        ],
    )
    if timeout != 1:  # the health-check change: rs2's TCP_CHECK connect_timeout
        head, _, tail = text.partition("real_server 192.168.0.55 80 {")
        tail = tail.replace("connect_timeout 1", f"connect_timeout {timeout:g}", 1)
        text = f"{head}real_server 192.168.0.55 80 {{{tail}"
    other = [
        "vrrp_instance VI_OTHER {",
        "    state BACKUP",
        "    interface fe0",
        "    virtual_router_id 62",
        f"    priority {other_priority}",
        "    advert_int 1",
        "    virtual_ipaddress {",
        f"        {OTHER_VIP}/16 dev fe0",
        "    }",
        "}",
    ]
    return text + "\n".join(other) + "\n"


# (what the reload changes, its settings, the change list it must report)
_LB = "TCP 172.16.9.1:80"
STEPS: list[tuple[str, dict[str, Any], dict[str, list[str]]]] = [
    ("unchanged file", {}, {}),
    ("priority of VI_OTHER", {"other_priority": 140}, {"instances_changed": ["VI_OTHER"]}),
    ("VIP added", {"other_priority": 140, "added_vip": True}, {"instances_changed": ["VI_LB"]}),
    ("VIP removed", {"other_priority": 140}, {"instances_changed": ["VI_LB"]}),
    ("real server added", {"other_priority": 140, "added_server": True},
     {"real_servers_added": [f"{_LB} -> {ADDED_SERVER}:80"]}),
    ("real server removed", {"other_priority": 140},
     {"real_servers_removed": [f"{_LB} -> {ADDED_SERVER}:80"]}),
    ("health check", {"other_priority": 140, "timeout": 2},
     {"real_servers_changed": [f"{_LB} -> 192.168.0.55:80"]}),
    ("health check back", {"other_priority": 140},
     {"real_servers_changed": [f"{_LB} -> 192.168.0.55:80"]}),
    ("priority of VI_OTHER back", {}, {"instances_changed": ["VI_OTHER"]}),
    ("unchanged file again", {}, {}),
]  # fmt: skip
RELOADS = 20


def _expected(changes: dict[str, list[str]]) -> dict[str, list[str]]:
    names = [f"{w}s_{v}" for w in ("instance", "virtual_server", "real_server")
             for v in ("added", "removed", "changed")]  # fmt: skip
    return {name: changes.get(name, []) for name in names}


SESSIONS = 8  # keep-alive connections, each its own flow (DR: each pinned on its own)


@pytest.mark.parametrize("lb_kind", ["NAT", "DR"])
def test_twenty_reloads_under_traffic_fail_no_request_and_move_no_state(
    tmp_path: Path, lb_kind: str
) -> None:
    # NAT: conntrack keeps each connection's real server. DR: the nftables flow table does;
    # adding the third real server resizes the Maglev table, which alone would move about half
    # of the keep-alive connections.
    with LbNet(tmp_path, nat=lb_kind == "NAT", sorry=True) as net:
        if lb_kind == "NAT":
            for name in ("rs1", "rs2", "sorry"):
                net.run(name, "ip", "route", "replace", "default", "via", GATEWAY)
        base = {"lb_kind": lb_kind, "lb_priority": 150, "other_priority": 150}
        d1 = net.start_vipkeeper(
            "d1",
            _traffic_config(**base),
            extra_args=["--metrics-listen", f"127.0.0.1:{METRICS_PORT}"],
        )
        d2 = net.start_vipkeeper(
            "d2", _traffic_config(lb_kind=lb_kind, lb_priority=100, other_priority=100)
        )
        daemons = [d1, d2]
        for name in ("VI_LB", "VI_OTHER"):
            poll(STARTUP, lambda n=name: _assert(instance(status(d1), n)["state"] == "MASTER"),
                 daemons)  # fmt: skip
        poll(CHECKS, lambda: _both_servers_checked(status(d1)), daemons)
        client = net.client()
        first = {n: client.start_session(n, interval=0.05, timeout=10) for n in range(SESSIONS)}
        transitions_before = (len(d1.states()), len(d2.states()))
        new_connections = failures = 0
        failed: list[str] = []
        answers: list[dict[str, Any]] = []
        for number in range(RELOADS):
            what, settings, expected = STEPS[number % len(STEPS)]
            d1.config_path.write_text(_traffic_config(**(base | settings)))
            answer = control.request(str(d1.control_socket), "reload", timeout=30)
            answers.append(answer)
            assert answer["result"] == "applied", (what, answer)
            assert answer["changes"] == _expected(expected), what
            assert status(d1)["last_reload"]["changes"] == _expected(expected), what
            for _ in range(5):  # new connections right after each reload
                new_connections += 1
                try:
                    client.get()
                except ConnectionError as error:
                    failures += 1
                    failed.append(f"after {what}: {error}")
        # The sessions span every reload and go on after them: their answers are counted
        # from before the first reload, however fast the reloads went.
        for n in range(SESSIONS):
            poll(CHECKS, lambda n=n: _assert(client.session_count(n) > RELOADS), daemons)
        sessions = {n: client.stop_session(n) for n in range(SESSIONS)}

        assert failures == 0, failed
        for n, session in sessions.items():
            assert session.errors == [], (n, session.errors)
            assert len(session.bodies) > RELOADS
            assert set(session.bodies) == {first[n]}, (n, set(session.bodies))  # never moved
        assert new_connections == 5 * RELOADS
        assert (len(d1.states()), len(d2.states())) == transitions_before, d1.log() + d2.log()
        document = status(d1)
        assert [i["state"] for i in document["instances"]] == ["MASTER", "MASTER"]
        reloaded = [r for r in d1.records() if str(r.get("msg", "")).startswith("reloaded ")]
        assert len(reloaded) == RELOADS
        samples = scrape(net, "d1")
        if lb_kind == "NAT":
            # The counter counts from the data plane's last apply, which a reload's change
            # makes a moment after the reload's answer: with no change since, five more
            # connections count five more.
            def connections() -> float:
                return metric(scrape(net, "d1"), "vipkeeper_virtual_server_connections_total",
                              local_port="80")  # fmt: skip

            before = connections()
            for _ in range(5):
                client.get()
            assert connections() - before == 5
        else:  # the DR counters count packets forwarded per real server since the last apply
            forwarded = [v for (name, _), v in samples.items()
                         if name == "vipkeeper_real_server_packets_total"]  # fmt: skip
            assert sum(forwarded) > 0, forwarded
        assert metric(samples, "vipkeeper_reloads_total", result="applied") == RELOADS
        assert all(d.running() for d in daemons)
