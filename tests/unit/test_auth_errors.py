"""keepalived's three authentication error counters, kept apart from the core to /metrics.

keepalived (vrrp.c, `vrrp_in_chk`) counts a v2 advert whose Auth Type is none of 0, 1, 2 as
`invalid_authtype`, a valid type other than the configured one as `authtype_mismatch`, and the
configured PASS type with another password as `auth_failure`; keepalived-exporter exports them
as keepalived_authentication_invalid_total, _mismatch_total and _failure_total.  Proves each
kind of bad advert lands in its own counter (different counts for each, so a swap shows), in the
status document and under the exporter's names, and that none of them reaches the state machine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from vipkeeper import metrics
from vipkeeper.core import vrrp_wire
from vipkeeper.core.events import PacketReceived, SourceAddressChanged, Started
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.testing import samples

CONFIG = """
vrrp_instance VI_A {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        10.0.0.100/24
    }
}
"""

# (auth type, password) of the bad adverts, and how many of each are sent.
BAD = {
    "authentication_invalid": ((7, b"secret"), 1),  # no such type
    "authentication_mismatch": ((int(vrrp_wire.AuthType.NONE), b""), 2),  # valid, not ours
    "authentication_failure": ((int(vrrp_wire.AuthType.PASS), b"wrong"), 3),  # our type
}
EXPORTED = {
    "authentication_invalid": "keepalived_authentication_invalid_total",
    "authentication_mismatch": "keepalived_authentication_mismatch_total",
    "authentication_failure": "keepalived_authentication_failure_total",
}


def _advert(auth_type: int, password: bytes) -> PacketReceived:
    payload = vrrp_wire.encode(
        vrrp_wire.Advertisement(
            version=2,
            vrid=51,
            priority=200,
            wire_interval=1,
            addresses=("10.0.0.100",),
            auth_type=auth_type,
            auth_data=password.ljust(vrrp_wire.PASSWORD_LEN, b"\x00"),
        )
    )
    return PacketReceived(source="10.0.0.7", destination="224.0.0.18", ttl=255, payload=payload)


def _document() -> dict[str, Any]:
    loaded = samples.load(CONFIG)
    instance = VrrpInstance(loaded.plan.settings["VI_A"])
    instance.handle(SourceAddressChanged(address="10.0.0.1"), 0.0)
    instance.handle(Started(), 0.0)
    now = 0.1
    for (auth_type, password), count in BAD.values():
        for _ in range(count):
            assert instance.handle(_advert(auth_type, password), now) == []
            now += 0.1
    assert instance.stats.adverts_received == 0
    assert instance.master_address is None
    return loaded.status({"VI_A": instance}, frozenset(), now=1.0)


def test_each_kind_of_bad_authentication_has_its_own_count_in_status() -> None:
    (instance,) = _document()["instances"]
    errors = instance["errors"]
    assert {kind: errors[kind] for kind in BAD} == {kind: n for kind, (_, n) in BAD.items()}
    assert instance["dropped"] == {"auth_type_invalid": 1, "auth_type": 2, "auth_mismatch": 3}


def test_each_kind_is_exported_under_keepalived_exporters_name(
    loop: asyncio.AbstractEventLoop,
) -> None:
    document = _document()

    async def take() -> metrics.Snapshot:
        return metrics.Snapshot(
            status=document,
            excluded_vips={},
            garp_delay={},
            scripts=[],
            transitions={},
            reloads={},
            control_requests=0,
            control_errors={},
            check_latency={},
            data_plane_errors=0,
            server_traffic={},
            service_connections={},
        )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DaemonCollector(loop, take))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    labels = (("iname", "VI_A"), ("intf", "eth0"), ("vrid", "51"))
    for kind, (_, count) in BAD.items():
        assert samples[(EXPORTED[kind], labels)] == count, kind
