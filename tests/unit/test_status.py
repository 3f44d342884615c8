"""The status document, built from real core objects and a real (unstarted) Director.

Proves: the document validates against docs/status.schema.json; an instance's state, priorities,
VIP presence, last transition (time and reason as the journal recorded them), advert counters,
Master releases and dropped-packet kinds come from the core's own objects; tracking that moved
the effective priority is listed; every real server of every virtual server appears with its
configured and effective weight and health, and the sorry server is listed; the transition
causes used for metrics name every reason the core gives on the usual paths (no "other").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vipkeeper import status
from vipkeeper.assemble import plan
from vipkeeper.config import parse_text
from vipkeeper.core import vrrp_wire
from vipkeeper.core.effects import ReportTransition
from vipkeeper.core.events import (
    PacketReceived,
    ShutdownRequested,
    SourceAddressChanged,
    Started,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.director import Director
from vipkeeper.io.scripts import ScriptRunner

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "status.schema.json").read_text())

CONFIG = """
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    track_interface {
        eth9 weight -20
    }
    virtual_ipaddress {
        10.0.0.100/24
        10.0.0.101/24
    }
}
vrrp_instance VI_2 {
    interface eth1
    virtual_router_id 52
    priority 100
    virtual_ipaddress {
        10.1.0.100/24
    }
}
vrrp_sync_group G {
    group {
        VI_2
    }
}
virtual_server 10.0.0.100 80 {
    delay_loop 5
    lb_algo rr
    lb_kind DR
    protocol TCP
    sorry_server 10.0.0.9 80
    real_server 10.0.0.2 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.0.0.3 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


def _advert(priority: int) -> PacketReceived:
    payload = vrrp_wire.encode(
        vrrp_wire.Advertisement(
            version=2,
            vrid=51,
            priority=priority,
            advert_interval=1,
            addresses=("10.0.0.100", "10.0.0.101"),
        )
    )
    return PacketReceived(source="10.0.0.7", destination="224.0.0.18", ttl=255, payload=payload)


def _run(instance: VrrpInstance, journal: status.Journal, event: Any, now: float) -> None:
    for effect in instance.handle(event, now):
        if isinstance(effect, ReportTransition):
            journal.record_transition(effect, 1_000_000.0 + now)


def _document() -> dict[str, Any]:
    result = parse_text(CONFIG, "/etc/keepalived/keepalived.conf")
    assert result.config is not None, result.diagnostics
    the_plan = plan(result.config)
    journal = status.Journal(
        started_at=1_000_000.0,
        config_file="/etc/keepalived/keepalived.conf",
        config_checksum="0" * 64,
        config_loaded_at=1_000_000.0,
    )
    vi1 = VrrpInstance(the_plan.settings["VI_1"])
    vi2 = VrrpInstance(the_plan.settings["VI_2"])
    _run(vi1, journal, SourceAddressChanged(address="10.0.0.1"), 0.0)
    _run(vi1, journal, Started(), 0.0)
    deadline = vi1.next_deadline()
    assert deadline is not None
    _run(vi1, journal, TimerFired(), deadline)  # Master
    _run(vi1, journal, _advert(200), deadline + 0.5)  # back to Backup
    _run(vi1, journal, TrackChanged(name="eth9", up=False, kind="interface"), deadline + 0.6)
    bad_ttl = _advert(200)
    _run(
        vi1,
        journal,
        PacketReceived(
            source=bad_ttl.source, destination=bad_ttl.destination, ttl=64, payload=bad_ttl.payload
        ),
        deadline + 0.7,
    )
    director = Director(result.config, runner=ScriptRunner())
    return status.build_status(
        plan=the_plan,
        instances={"VI_1": vi1, "VI_2": vi2},
        groups={},
        director=director,
        journal=journal,
        present_vips=frozenset({("10.0.0.100", "eth0")}),
        now=1_000_010.0,
        wall_offset=1_000_000.0,
    )


def test_status_document_validates_against_the_schema() -> None:
    jsonschema.validate(_document(), SCHEMA)


def test_schema_rejects_a_document_without_instances() -> None:
    document = _document()
    del document["instances"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_instances_carry_the_cores_state() -> None:
    document = _document()
    vi1, vi2 = document["instances"]
    assert vi1["name"] == "VI_1"
    assert vi1["state"] == "BACKUP"
    assert vi1["priority"] == 150
    assert vi1["effective_priority"] == 130
    assert vi1["tracking"] == [
        {"kind": "interface", "name": "eth9", "weight": -20, "up": False},
        {"kind": "interface", "name": "eth0", "weight": 0, "up": True},
    ]
    assert vi1["master_address"] == "10.0.0.7"
    assert vi1["vips"] == [
        {"address": "10.0.0.100", "prefixlen": 24, "dev": "eth0", "present": True},
        {"address": "10.0.0.101", "prefixlen": 24, "dev": "eth0", "present": False},
    ]
    last = vi1["last_transition"]
    assert (last["from"], last["to"]) == ("MASTER", "BACKUP")
    assert last["reason"] == "higher priority 200 from 10.0.0.7"
    assert last["time"] > 1_000_000.0
    assert vi1["became_master"] == 1
    assert vi1["released_master"] == 1
    assert vi1["adverts"]["received"] == 1
    assert vi1["adverts"]["sent"] >= 1
    assert vi1["errors"]["ip_ttl"] == 1
    assert vi1["dropped"] == {"ttl": 1}
    assert vi2["sync_group"] == "G"
    assert vi2["state"] == "INIT"
    assert vi2["last_transition"]["reason"] == "startup"


def test_virtual_servers_list_every_real_server_and_the_sorry_server() -> None:
    (vs,) = _document()["virtual_servers"]
    assert vs["name"] == "TCP 10.0.0.100:80"
    assert (vs["scheduler"], vs["method"]) == ("rr", "DR")
    assert [(rs["address"], rs["weight"], rs["health"]) for rs in vs["real_servers"]] == [
        ("10.0.0.2", 2, "up"),
        ("10.0.0.3", 1, "up"),
    ]
    assert all(rs["last_check"] is None for rs in vs["real_servers"])
    assert [rs["checkers"] for rs in vs["real_servers"]] == [["TCP_CHECK"], ["TCP_CHECK"]]
    assert vs["sorry_server"] == {"address": "10.0.0.9", "port": 80, "active": False}


def test_every_usual_transition_has_a_named_cause() -> None:
    journal = status.Journal(
        started_at=0.0, config_file="f", config_checksum="0" * 64, config_loaded_at=0.0
    )
    _document()
    result = parse_text(CONFIG, "k.conf")
    assert result.config is not None
    instance = VrrpInstance(plan(result.config).settings["VI_1"])
    _run(instance, journal, SourceAddressChanged(address="10.0.0.1"), 0.0)
    _run(instance, journal, Started(), 0.0)
    deadline = instance.next_deadline()
    assert deadline is not None
    _run(instance, journal, TimerFired(), deadline)
    _run(instance, journal, _advert(200), deadline + 1)
    _run(instance, journal, TrackChanged(name="eth0", up=False, kind="interface"), deadline + 2)
    _run(instance, journal, TrackChanged(name="eth0", up=True, kind="interface"), deadline + 3)
    _run(instance, journal, ShutdownRequested(), deadline + 4)
    causes = {cause for (_name, _to, cause) in journal.transitions}
    assert causes == {
        "startup",
        "master_down",
        "higher_priority",
        "track_interface",
        "shutdown",
    }


def test_a_removed_instance_leaves_the_journal() -> None:
    journal = status.Journal(
        started_at=0.0, config_file="f", config_checksum="0" * 64, config_loaded_at=0.0
    )
    for name in ("VI_1", "VI_2"):
        journal.record_transition(
            ReportTransition(instance=name, old="MASTER", new="BACKUP", reason="startup"), 1.0
        )
    journal.forget(["VI_1"])
    assert set(journal.last_transitions) == {"VI_2"}
    assert set(journal.released_master) == {"VI_2"}
    assert {key[0] for key in journal.transitions} == {"VI_2"}
