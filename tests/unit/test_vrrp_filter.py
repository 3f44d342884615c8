"""vrrp_peer_filter: the keyword, the nft script it renders, and the filter's life (sync on start
and reload, removal on stop, counters) against a recording nft runner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vipkeeper.config.load import parse_text
from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL
from vipkeeper.io.vrrp_filter import (
    PRIORITY,
    TABLE,
    Peer,
    VrrpFilter,
    peers_of,
    render,
    render_removal,
)
from vipkeeper.testing.builders import instance_settings

INSTANCE = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    unicast_src_ip 10.0.0.1
    unicast_peer {
        10.0.0.2
    }
    virtual_ipaddress {
        10.0.0.100/24
    }
}
"""


def config(global_line: str, instance: str = INSTANCE) -> Any:
    return parse_text("global_defs {\n    " + global_line + "\n}\n" + instance)


# -- the keyword ----------------------------------------------------------------------------


def test_the_filter_is_off_unless_asked_for() -> None:
    result = config("router_id r1")
    assert result.config is not None, result.diagnostics
    assert result.config.global_defs.vrrp_peer_filter is False


@pytest.mark.parametrize(("line", "value"), [("vrrp_peer_filter", True),
                                             ("vrrp_peer_filter off", False)])  # fmt: skip
def test_the_keyword_is_a_flag_and_no_warning(line: str, value: bool) -> None:
    result = config(line)
    assert result.config is not None, result.diagnostics
    assert result.config.global_defs.vrrp_peer_filter is value
    assert result.diagnostics == []


def test_a_bad_value_is_refused_where_it_is_written() -> None:
    result = config("vrrp_peer_filter sometimes")
    assert result.config is None
    (error,) = [d for d in result.diagnostics if "sometimes" in d.message]
    assert (error.line, error.column) == (2, 22), error.format()


def test_an_instance_without_unicast_peers_is_refused_at_the_instance() -> None:
    multicast = INSTANCE.replace("    unicast_peer {\n        10.0.0.2\n    }\n", "")
    result = config("vrrp_peer_filter", multicast)
    assert result.config is None
    (error,) = [d for d in result.diagnostics if "vrrp_peer_filter" in d.message]
    assert error.line == 5 and "VI_1" in error.message and "unicast_peer" in error.message
    assert config("router_id r1", multicast).config is not None  # without the filter: fine


# -- the script -----------------------------------------------------------------------------


def test_peers_come_from_each_instance_interface_and_unicast_peers_once_each() -> None:
    settings = [
        instance_settings(unicast_peers=("10.0.0.3", "10.0.0.2")),
        instance_settings(name="VI_2", vrid=52, unicast_peers=("10.0.0.2",)),
        instance_settings(
            name="VI_3",
            interface="eth1",
            family=6,
            version=3,
            virtual_addresses=(),
            unicast_peers=("fd00::2",),
        ),
        instance_settings(name="VI_4", interface="eth2"),  # multicast: no peer
    ]
    assert peers_of(settings) == (
        Peer("eth0", "10.0.0.2"),
        Peer("eth0", "10.0.0.3"),
        Peer("eth1", "fd00::2"),
    )


def test_the_script_accepts_vrrp_from_peers_drops_and_counts_the_rest() -> None:
    script = render([Peer("eth0", "10.0.0.2"), Peer("eth1", "fd00::2"), Peer("eth0", "10.0.0.2")])
    lines = script.splitlines()
    assert f"table inet {TABLE} {{" in lines
    assert f"type filter hook input priority {PRIORITY}; policy accept;" in script
    assert f'add element inet {TABLE} peers4 {{ "eth0" . 10.0.0.2 }}' in lines
    assert f'add element inet {TABLE} peers6 {{ "eth1" . fd00::2 }}' in lines
    rules = [line.removeprefix(f"add rule inet {TABLE} input ") for line in lines
             if line.startswith("add rule")]  # fmt: skip
    assert rules == [
        f"meta l4proto != {VRRP_PROTOCOL} accept",
        "iifname . ip saddr @peers4 counter name accepted accept",
        "iifname . ip6 saddr @peers6 counter name accepted accept",
        "counter name dropped drop",
    ]
    # The old rules and peers go in the same transaction, before the new ones.
    first_rule = lines.index(f"add rule inet {TABLE} input {rules[0]}")
    assert lines.index(f"flush chain inet {TABLE} input") < first_rule
    assert f"flush set inet {TABLE} peers4" in lines and f"flush set inet {TABLE} peers6" in lines


def test_a_family_without_peers_gets_no_element_line() -> None:
    script = render([Peer("eth0", "10.0.0.2")])
    assert "peers4 {" in script and "add element inet vipkeeper_vrrp peers6" not in script


def test_an_interface_name_nft_would_misread_is_refused() -> None:
    with pytest.raises(ValueError, match="refusing"):
        render([Peer('eth0"; flush ruleset; "', "10.0.0.2")])


def test_removal_loads_whether_or_not_the_table_exists() -> None:
    assert render_removal() == f"table inet {TABLE}\ndelete table inet {TABLE}\n"


# -- the filter's life ----------------------------------------------------------------------


class Nft:
    """Records every nft call; answers `list counters` with the given values."""

    def __init__(self, accepted: int = 0, dropped: int = 0) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.values = {"accepted": accepted, "dropped": dropped}

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        self.calls.append((tuple(argv), stdin))
        if "counters" in argv:
            items = [{"counter": {"family": "inet", "table": TABLE, "name": name,
                                  "packets": packets, "bytes": packets * 46}}
                     for name, packets in self.values.items()]  # fmt: skip
            return json.dumps({"nftables": [{"metainfo": {}}, *items]})
        return ""


def test_sync_installs_replaces_and_a_stop_removes_the_table() -> None:
    nft = Nft(accepted=7, dropped=12345)
    vrrp_filter = VrrpFilter(runner=nft)
    one = [instance_settings(unicast_peers=("10.0.0.2",))]
    two = [instance_settings(unicast_peers=("10.0.0.2", "10.0.0.3"))]

    async def life() -> Any:
        assert await vrrp_filter.counters() is None  # not installed
        await vrrp_filter.sync(True, one)
        await vrrp_filter.sync(True, two)  # a reload
        counted = await vrrp_filter.counters()
        await vrrp_filter.remove()
        await vrrp_filter.remove()  # nothing left to remove
        return counted

    counted = asyncio.run(life())
    loads = [stdin for argv, stdin in nft.calls if argv == ("nft", "-f", "-")]
    assert loads == [render(peers_of(one)), render(peers_of(two)), render_removal()]
    assert counted == {
        "table": f"inet {TABLE}",
        "peers": [{"interface": "eth0", "address": "10.0.0.2"},
                  {"interface": "eth0", "address": "10.0.0.3"}],
        "accepted": {"packets": 7, "bytes": 7 * 46},
        "dropped": {"packets": 12345, "bytes": 12345 * 46},
    }  # fmt: skip
    assert vrrp_filter.peers is None


def test_turned_off_it_removes_only_what_it_installed() -> None:
    nft = Nft()
    vrrp_filter = VrrpFilter(runner=nft)
    settings = [instance_settings(unicast_peers=("10.0.0.2",))]

    async def life() -> None:
        await vrrp_filter.sync(False, settings)  # never installed: no nft at all
        assert nft.calls == []
        await vrrp_filter.sync(True, settings)
        await vrrp_filter.sync(False, settings)  # a reload without vrrp_peer_filter

    asyncio.run(life())
    assert [stdin for _argv, stdin in nft.calls] == [render(peers_of(settings)), render_removal()]


# -- where the counters show ----------------------------------------------------------------


def test_the_counters_are_in_the_status_document_and_on_metrics() -> None:
    import threading

    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from vipkeeper import metrics
    from vipkeeper.testing.samples import status_document

    document = status_document()
    assert document["vrrp_filter"] is None  # the sample runs without the filter
    nft = Nft(accepted=3, dropped=40000)
    vrrp_filter = VrrpFilter(runner=nft)
    asyncio.run(vrrp_filter.sync(True, [instance_settings(unicast_peers=("10.0.0.2",))]))
    document["vrrp_filter"] = asyncio.run(vrrp_filter.counters())
    schema = json.loads((Path(__file__).parents[2] / "docs" / "status.schema.json").read_text())
    jsonschema.validate(document, schema)
    snapshot = metrics.Snapshot(
        status=document, excluded_vips={}, garp_delay={}, scripts=[], transitions={},
        reloads={}, control_requests=0, control_errors={}, check_latency={},
        data_plane_errors=0, server_traffic={}, service_connections={},
    )  # fmt: skip

    async def take() -> metrics.Snapshot:
        return snapshot

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics.DaemonCollector(loop, take))
        text = generate_latest(registry).decode()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert 'vipkeeper_vrrp_filter_packets_total{verdict="accepted"} 3.0' in text
    assert 'vipkeeper_vrrp_filter_packets_total{verdict="dropped"} 40000.0' in text
