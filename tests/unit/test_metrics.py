"""The /metrics exposition, from a status document built of real core objects.

Proves: keepalived-exporter's metrics carry its names, labels and value conventions (state 0..3
per VIP with `ip_address`, counters per `iname`/`intf`/`vrid`, script status GOOD=1 / BAD=0);
the vipkeeper_ metrics carry node_exporter's IPVS label names; the check-latency histogram is
cumulative; a scrape reads the daemon's state on the loop (a loop in another thread here) and
reports `keepalived_up 0` when the loop does not answer; ADDR:PORT parsing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from vipkeeper import metrics
from vipkeeper.core.health import Endpoint
from vipkeeper.testing.samples import status_document


def _snapshot() -> metrics.Snapshot:
    latency = metrics.CheckLatency()
    server = Endpoint(address="10.0.0.2", port=80)
    for seconds in (0.002, 0.003, 0.3):
        latency.observe("TCP 10.0.0.100:80", server, seconds)
    return metrics.Snapshot(
        status=status_document(),
        excluded_vips={"VI_1": [("10.0.0.250", "eth0")]},
        garp_delay={"VI_1": 5.0, "VI_2": 5.0},
        scripts=[("chk_up", True, False), ("chk_down", False, True)],
        transitions={("VI_1", "MASTER", "master_down"): 1},
        reloads={"refused": 2},
        control_requests=3,
        control_errors={"malformed": 1},
        check_latency=latency.snapshot(),
        data_plane_errors=0,
        server_traffic={("TCP 10.0.0.100:80", "10.0.0.2", 80): (12, 3400)},
        service_connections={"TCP 10.0.0.100:80": 7},
    )


def _scrape(loop: asyncio.AbstractEventLoop, snapshot: Any) -> dict[str, list[Any]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DaemonCollector(loop, snapshot))
    text = generate_latest(registry).decode()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_exporter_names_labels_and_values(loop: asyncio.AbstractEventLoop) -> None:
    async def take() -> metrics.Snapshot:
        return _snapshot()

    samples = _scrape(loop, take)
    assert samples["keepalived_up"] == [({}, 1.0)]
    state = {s[0]["ip_address"]: (s[0], s[1]) for s in samples["keepalived_vrrp_state"]}
    labels, value = state["10.0.0.100"]
    assert labels == {"iname": "VI_1", "intf": "eth0", "vrid": "51", "ip_address": "10.0.0.100"}
    assert value == metrics.VRRP_STATE_VALUES["BACKUP"] == 1
    assert state["10.1.0.100"][1] == 0  # VI_2 not started: INIT
    assert samples["keepalived_vrrp_excluded_state"] == [
        ({"iname": "VI_1", "intf": "eth0", "vrid": "51", "ip_address": "10.0.0.250"}, 1.0)
    ]
    became = dict((s[0]["iname"], s[1]) for s in samples["keepalived_become_master_total"])
    assert became == {"VI_1": 1.0, "VI_2": 0.0}
    assert ({"iname": "VI_1", "intf": "eth0", "vrid": "51"}, 1.0) in samples[
        "keepalived_ip_ttl_errors_total"
    ]
    assert ({"iname": "VI_1", "intf": "eth0", "vrid": "51"}, 1.0) in samples[
        "keepalived_release_master_total"
    ]
    assert sorted(samples["keepalived_script_status"], key=str) == sorted(
        [({"name": "chk_up"}, 1.0), ({"name": "chk_down"}, 0.0)], key=str
    )
    assert ({"name": "chk_down"}, 1.0) in samples["keepalived_script_state"]
    assert samples["vipkeeper_reloads_total"] == [
        ({"result": "applied"}, 0.0),
        ({"result": "refused"}, 2.0),
    ]
    assert samples["vipkeeper_control_errors_total"] == [({"code": "malformed"}, 1.0)]


def test_real_servers_use_node_exporter_labels_and_a_cumulative_histogram(
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def take() -> metrics.Snapshot:
        return _snapshot()

    samples = _scrape(loop, take)
    backend = {
        "local_address": "10.0.0.100",
        "local_port": "80",
        "local_mark": "",
        "proto": "TCP",
        "remote_address": "10.0.0.2",
        "remote_port": "80",
    }
    # Healthy (no check has failed) but not yet in the pool: the Director was never started.
    assert (backend, 1.0) in samples["vipkeeper_real_server_up"]
    assert (backend, 0.0) in samples["vipkeeper_real_server_in_pool"]
    assert (backend, 0.0) in samples["vipkeeper_real_server_weight"]
    buckets = {
        s[0]["le"]: s[1] for s in samples["vipkeeper_real_server_check_duration_seconds_bucket"]
    }
    assert buckets["0.0025"] == 1
    assert buckets["0.005"] == 2
    assert buckets["0.25"] == 2
    assert buckets["0.5"] == 3
    assert buckets["+Inf"] == 3
    assert samples["vipkeeper_real_server_check_duration_seconds_count"][0][1] == 3
    assert samples["vipkeeper_real_server_packets_total"] == [(backend, 12.0)]
    assert samples["vipkeeper_real_server_bytes_total"] == [(backend, 3400.0)]
    service = {k: v for k, v in backend.items() if not k.startswith("remote")}
    assert samples["vipkeeper_virtual_server_connections_total"] == [(service, 7.0)]


def test_a_loop_that_does_not_answer_reads_as_down(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "SCRAPE_TIMEOUT", 0.2)

    async def stuck() -> metrics.Snapshot:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    samples = _scrape(loop, stuck)
    assert samples == {"keepalived_up": [({}, 0.0)]}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:9650", ("127.0.0.1", 9650)), ("[::1]:9650", ("::1", 9650))],
)
def test_listen_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert metrics.parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["9650", ":9650", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        metrics.parse_listen(text)
