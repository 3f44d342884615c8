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

import jsonschema
import pytest

from vipkeeper import status
from vipkeeper.assemble import plan
from vipkeeper.config import parse_text
from vipkeeper.core.effects import ReportTransition
from vipkeeper.core.events import (
    ShutdownRequested,
    SourceAddressChanged,
    Started,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.testing.samples import CONFIG, advert, feed, status_document

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "status.schema.json").read_text())


def test_status_document_validates_against_the_schema() -> None:
    jsonschema.validate(status_document(), SCHEMA)


def test_schema_rejects_a_document_without_instances() -> None:
    document = status_document()
    del document["instances"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_instances_carry_the_cores_state() -> None:
    document = status_document()
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
    (vs,) = status_document()["virtual_servers"]
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
    status_document()
    result = parse_text(CONFIG, "k.conf")
    assert result.config is not None
    instance = VrrpInstance(plan(result.config).settings["VI_1"])
    feed(instance, journal, SourceAddressChanged(address="10.0.0.1"), 0.0)
    feed(instance, journal, Started(), 0.0)
    deadline = instance.next_deadline()
    assert deadline is not None
    feed(instance, journal, TimerFired(), deadline)
    feed(instance, journal, advert(200), deadline + 1)
    feed(instance, journal, TrackChanged(name="eth0", up=False, kind="interface"), deadline + 2)
    feed(instance, journal, TrackChanged(name="eth0", up=True, kind="interface"), deadline + 3)
    feed(instance, journal, ShutdownRequested(), deadline + 4)
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
