"""Prometheus metrics: `vipkeeper run --metrics-listen ADDR:PORT` serves /metrics.

Owns the metric names, labels and value conventions (docs/operations.md has the table): where
mehdy/keepalived-exporter has a metric with the same meaning, its exact name and labels, so
existing dashboards and alerts keep working; everything else under `vipkeeper_`, with
node_exporter's IPVS label names for virtual and real servers. Also owns the health-check
latency histogram the Director feeds.

How it stays off the event loop: prometheus-client's HTTP server runs in its own threads; a
scrape asks the loop for a `Snapshot` (`asyncio.run_coroutine_threadsafe`, bounded by
SCRAPE_TIMEOUT), so every piece of daemon state is read on the loop, never from the thread.
A loop that does not answer in time is reported as `keepalived_up 0`.
Must never: read daemon state from the HTTP thread, or block the loop.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vipkeeper.core.health import Endpoint

# prometheus-client is imported when metrics are served or collected, not when the daemon
# starts: `vipkeeper run` without --metrics-listen never pays for it.
if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.core import Metric

log = logging.getLogger("vipkeeper.metrics")

SCRAPE_TIMEOUT = 5.0  # seconds a scrape waits for the loop's snapshot

# keepalived-exporter's value conventions.
VRRP_STATE_VALUES = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3}
SCRIPT_STATUS_VALUES = {"BAD": 0, "GOOD": 1}
SCRIPT_STATE_VALUES = {"idle": 0, "running": 1}

# keepalived-exporter's per-instance counters: (metric name, help, where the status document's
# instance has it: a key, or `section.key`).
INSTANCE_LABELS = ("iname", "intf", "vrid")
_INSTANCE_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("keepalived_advertisements_received_total", "Advertisements received", "adverts.received"),
    ("keepalived_advertisements_sent_total", "Advertisements sent", "adverts.sent"),
    ("keepalived_become_master_total", "Became master", "became_master"),
    ("keepalived_release_master_total", "Released master", "released_master"),
    ("keepalived_packet_length_errors_total", "Packet length errors", "errors.packet_length"),
    ("keepalived_advertisements_interval_errors_total", "Advertisement interval errors",
     "errors.advert_interval"),
    ("keepalived_ip_ttl_errors_total", "TTL errors", "errors.ip_ttl"),
    ("keepalived_invalid_type_received_total", "Invalid type errors", "errors.invalid_type"),
    ("keepalived_address_list_errors_total", "Address list errors", "errors.address_list"),
    ("keepalived_authentication_invalid_total", "Authentication invalid",
     "errors.authentication_invalid"),
    ("keepalived_authentication_mismatch_total", "Authentication mismatch",
     "errors.authentication_mismatch"),
    ("keepalived_authentication_failure_total", "Authentication failure",
     "errors.authentication_failure"),
    ("keepalived_priority_zero_received_total", "Priority zero received",
     "adverts.priority_zero_received"),
    ("keepalived_priority_zero_sent_total", "Priority zero sent", "adverts.priority_zero_sent"),
)  # fmt: skip


def _counter(instance: Mapping[str, Any], path: str) -> int:
    value: Any = instance
    for key in path.split("."):
        value = value[key]
    return int(value)


# node_exporter's IPVS collector label names.
SERVICE_LABELS = ("local_address", "local_port", "local_mark", "proto")
BACKEND_LABELS = ("local_address", "local_port", "local_mark", "proto", "remote_address",
                  "remote_port")  # fmt: skip

# Seconds: health-check latency histogram buckets (a check is bounded by its connect_timeout).
CHECK_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                         10.0)  # fmt: skip


class CheckLatency:
    """Health-check durations per real server, as histogram bucket counts (fed on the loop)."""

    def __init__(self) -> None:
        # (virtual server, address, port) -> [counts per bucket (+Inf last), sum]
        self._series: dict[tuple[str, str, int], tuple[list[int], list[float]]] = {}

    def observe(self, virtual_server: str, server: Endpoint, seconds: float) -> None:
        key = (virtual_server, server.address, server.port)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = ([0] * (len(CHECK_LATENCY_BUCKETS) + 1), [0.0])
        series[0][bisect.bisect_left(CHECK_LATENCY_BUCKETS, seconds)] += 1
        series[1][0] += seconds

    def snapshot(self) -> dict[tuple[str, str, int], tuple[tuple[int, ...], float]]:
        return {key: (tuple(counts), total[0]) for key, (counts, total) in self._series.items()}


@dataclass(frozen=True)
class Snapshot:
    """What one scrape shows, copied on the loop."""

    status: Mapping[str, Any]  # the status document (vipkeeper.status)
    excluded_vips: Mapping[str, Sequence[tuple[str, str]]]  # instance -> (address, dev)
    garp_delay: Mapping[str, float]  # instance -> garp_master_delay seconds
    scripts: Sequence[tuple[str, bool, bool]]  # (vrrp_script, up, running now)
    transitions: Mapping[tuple[str, str, str], int]  # (instance, new state, cause) -> count
    reloads: Mapping[str, int]  # result -> count
    control_requests: int
    control_errors: Mapping[str, int]  # error code -> count
    check_latency: Mapping[tuple[str, str, int], tuple[tuple[int, ...], float]]
    data_plane_errors: int  # applies the data plane refused
    # Since the data plane's last rewrite: (vs, address, port) -> (packets, bytes); vs -> conns.
    server_traffic: Mapping[tuple[str, str, int], tuple[int, int]]
    service_connections: Mapping[str, int]


def _service_labels(vs: Mapping[str, Any]) -> list[str]:
    return [
        vs["address"] or "",
        str(vs["port"] or 0),
        str(vs["fwmark"]) if vs["fwmark"] is not None else "",
        vs["protocol"],
    ]


class DaemonCollector:
    """Builds every metric from one loop snapshot per scrape (runs in the HTTP thread); a
    prometheus-client collector."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, snapshot: Callable[[], Coroutine[Any, Any, Snapshot]]
    ) -> None:
        self._loop = loop
        self._snapshot = snapshot

    def _take(self) -> Snapshot | None:
        if self._loop.is_closed():
            return None
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
        try:
            return future.result(SCRAPE_TIMEOUT)
        except Exception as exc:  # a stuck or stopping loop: report down, never hang
            future.cancel()
            log.warning("metrics: no snapshot from the daemon: %r", exc)
            return None

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        snapshot = self._take()
        up = GaugeMetricFamily("keepalived_up", "Status")
        up.add_metric([], 1 if snapshot is not None else 0)
        yield up
        if snapshot is None:
            return
        yield from _vrrp_metrics(snapshot)
        yield from _operator_metrics(snapshot)
        yield from _lvs_metrics(snapshot)


def _vrrp_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    instances = snapshot.status["instances"]
    state = GaugeMetricFamily(
        "keepalived_vrrp_state", "State of vrrp", labels=[*INSTANCE_LABELS, "ip_address"]
    )
    excluded = GaugeMetricFamily(
        "keepalived_vrrp_excluded_state",
        "State of vrrp with excluded VIP",
        labels=[*INSTANCE_LABELS, "ip_address"],
    )
    counters = [
        (CounterMetricFamily(name.removesuffix("_total"), text, labels=INSTANCE_LABELS), path)
        for name, text, path in _INSTANCE_COUNTERS
    ]
    garp = CounterMetricFamily(
        "keepalived_gratuitous_arp_delay", "Gratuitous ARP delay", labels=INSTANCE_LABELS
    )
    priority = GaugeMetricFamily(
        "vipkeeper_vrrp_priority", "Configured priority", labels=INSTANCE_LABELS
    )
    effective = GaugeMetricFamily(
        "vipkeeper_vrrp_effective_priority",
        "Priority after tracking weights",
        labels=INSTANCE_LABELS,
    )
    for item in instances:
        labels = [item["name"], item["interface"], str(item["vrid"])]
        value = VRRP_STATE_VALUES[item["state"]]
        for vip in item["vips"]:
            state.add_metric([item["name"], vip["dev"], str(item["vrid"]), vip["address"]], value)
        if not item["vips"]:
            state.add_metric([*labels, ""], value)
        for address, dev in snapshot.excluded_vips.get(item["name"], ()):
            excluded.add_metric([item["name"], dev, str(item["vrid"]), address], value)
        for family, path in counters:
            family.add_metric(labels, _counter(item, path))
        garp.add_metric(labels, snapshot.garp_delay.get(item["name"], 0.0))
        priority.add_metric(labels, item["priority"])
        effective.add_metric(labels, item["effective_priority"])
    yield state
    yield excluded
    for family, _ in counters:
        yield family
    yield garp
    yield priority
    yield effective
    status = GaugeMetricFamily("keepalived_script_status", "Tracker Script Status", labels=["name"])
    script_state = GaugeMetricFamily(
        "keepalived_script_state", "Tracker Script State", labels=["name"]
    )
    for name, good, running in snapshot.scripts:
        status.add_metric([name], SCRIPT_STATUS_VALUES["GOOD" if good else "BAD"])
        script_state.add_metric([name], SCRIPT_STATE_VALUES["running" if running else "idle"])
    yield status
    yield script_state
    transitions = CounterMetricFamily(
        "vipkeeper_vrrp_transitions",
        "State transitions by new state and cause",
        labels=["iname", "state", "cause"],
    )
    for (name, new_state, cause), count in sorted(snapshot.transitions.items()):
        transitions.add_metric([name, new_state, cause], count)
    yield transitions


def _operator_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    reloads = CounterMetricFamily("vipkeeper_reloads", "Reloads by result", labels=["result"])
    for result in ("applied", "refused"):
        reloads.add_metric([result], snapshot.reloads.get(result, 0))
    yield reloads
    last = snapshot.status["last_reload"]
    if last is not None:
        when = GaugeMetricFamily(
            "vipkeeper_last_reload_timestamp_seconds", "When the last reload was asked for"
        )
        when.add_metric([], last["time"])
        yield when
        success = GaugeMetricFamily(
            "vipkeeper_last_reload_success", "1 if the last reload was applied, 0 if refused"
        )
        success.add_metric([], 1 if last["result"] == "applied" else 0)
        yield success
    loaded = GaugeMetricFamily(
        "vipkeeper_config_loaded_timestamp_seconds", "When the running configuration was loaded"
    )
    loaded.add_metric([], snapshot.status["config"]["loaded_at"])
    yield loaded
    requests = CounterMetricFamily(
        "vipkeeper_control_requests", "Control-socket requests answered successfully"
    )
    requests.add_metric([], snapshot.control_requests)
    yield requests
    errors = CounterMetricFamily(
        "vipkeeper_control_errors", "Control-socket requests refused, by error", labels=["code"]
    )
    for code, count in sorted(snapshot.control_errors.items()):
        errors.add_metric([code], count)
    yield errors
    vrrp_filter = snapshot.status.get("vrrp_filter")
    if vrrp_filter is not None:
        packets = CounterMetricFamily(
            "vipkeeper_vrrp_filter_packets",
            "VRRP packets the peer filter accepted (from a peer) or dropped, in the kernel",
            labels=["verdict"],
        )
        for verdict in ("accepted", "dropped"):
            packets.add_metric([verdict], vrrp_filter[verdict]["packets"])
        yield packets


def _lvs_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    quorum = GaugeMetricFamily(
        "vipkeeper_virtual_server_quorum_up",
        "1 while the virtual server's live weight holds its quorum",
        labels=SERVICE_LABELS,
    )
    weight = GaugeMetricFamily(
        "vipkeeper_real_server_weight",
        "Weight the data plane gives the real server (0 when down and inhibited)",
        labels=BACKEND_LABELS,
    )
    up = GaugeMetricFamily(
        "vipkeeper_real_server_up", "1 if the real server passes its checks", labels=BACKEND_LABELS
    )
    in_pool = GaugeMetricFamily(
        "vipkeeper_real_server_in_pool",
        "1 if the data plane forwards to the real server",
        labels=BACKEND_LABELS,
    )
    latency = HistogramMetricFamily(
        "vipkeeper_real_server_check_duration_seconds",
        "Health-check durations",
        labels=BACKEND_LABELS,
    )
    services = {vs["name"]: vs for vs in snapshot.status["virtual_servers"]}
    for vs in services.values():
        service = _service_labels(vs)
        quorum.add_metric(service, 1 if vs["quorum_up"] else 0)
        for rs in vs["real_servers"]:
            labels = [*service, rs["address"], str(rs["port"])]
            weight.add_metric(labels, rs["effective_weight"] if rs["in_pool"] else 0)
            up.add_metric(labels, 1 if rs["health"] == "up" else 0)
            in_pool.add_metric(labels, 1 if rs["in_pool"] else 0)
    packets = CounterMetricFamily(
        "vipkeeper_real_server_packets",
        "Packets forwarded to the real server (nftables DR) since the data plane's last change",
        labels=BACKEND_LABELS,
    )
    octets = CounterMetricFamily(
        "vipkeeper_real_server_bytes",
        "Bytes forwarded to the real server (nftables DR) since the data plane's last change",
        labels=BACKEND_LABELS,
    )
    for (name, address, port), (count, size) in sorted(snapshot.server_traffic.items()):
        if name in services:
            labels = [*_service_labels(services[name]), address, str(port)]
            packets.add_metric(labels, count)
            octets.add_metric(labels, size)
    connections = CounterMetricFamily(
        "vipkeeper_virtual_server_connections",
        "Connections forwarded (nftables NAT) since the data plane's last change",
        labels=SERVICE_LABELS,
    )
    for name, count in sorted(snapshot.service_connections.items()):
        if name in services:
            connections.add_metric(_service_labels(services[name]), count)
    yield packets
    yield octets
    yield connections
    for (name, address, port), (counts, total) in sorted(snapshot.check_latency.items()):
        found = services.get(name)
        if found is None:
            continue
        cumulative = 0
        buckets = []
        for bound, count in zip((*CHECK_LATENCY_BUCKETS, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        latency.add_metric([*_service_labels(found), address, str(port)], buckets, total)
    apply_errors = CounterMetricFamily(
        "vipkeeper_data_plane_apply_errors", "Changes the data plane (nftables, IPVS) refused"
    )
    apply_errors.add_metric([], snapshot.data_plane_errors)
    yield apply_errors
    yield quorum
    yield weight
    yield up
    yield in_pool
    yield latency


class MetricsServer:
    """prometheus-client's HTTP server for one DaemonCollector, in its own threads."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, snapshot: Callable[[], Coroutine[Any, Any, Snapshot]]) -> None:
        from prometheus_client import start_http_server
        from prometheus_client.registry import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(DaemonCollector(asyncio.get_running_loop(), snapshot))
        self._server, self._thread = start_http_server(self.port, self.address, registry)
        self.port = self._server.server_port  # when 0 asked the kernel for one
        log.info("metrics at http://%s:%d/metrics", self.address, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() waits for the serving thread, which may wait for this loop: not on it.
        await asyncio.to_thread(server.shutdown)
        server.server_close()


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT (IPv6 as [ADDR]:PORT) -> (address, port); ValueError with the reason."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not ADDR:PORT")
    host = host.removeprefix("[").removesuffix("]")
    if not host:
        raise ValueError(f"{text!r} has no address (use 0.0.0.0:{port} for every address)")
    return host, int(port)
