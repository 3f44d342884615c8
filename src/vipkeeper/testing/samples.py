"""A configuration that must parse, and a status document built from real core objects, for the
status and metrics tests.

Owns `parsed` (a keepalived.conf text parsed, or an AssertionError with the diagnostics) and one
sample: CONFIG (two VRRP instances, one tracking eth9 with weight -20, a sync group, a virtual
server with two real servers and a sorry server) and `status_document()`, the document
`status.build_status` gives after VI_1 became Master, heard a better peer, lost eth9 and dropped
an advert with a bad TTL. Must never: open a socket or read a clock (times are fixed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vipkeeper import status
from vipkeeper.assemble import Plan, plan
from vipkeeper.config import parse_text
from vipkeeper.config.model import Config
from vipkeeper.core.effects import ReportTransition
from vipkeeper.core.events import (
    PacketReceived,
    SourceAddressChanged,
    Started,
    TimerFired,
    TrackChanged,
)
from vipkeeper.core.states import TrackKind
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.director import Director
from vipkeeper.io.scripts import ScriptRunner
from vipkeeper.testing import builders

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


def advert(priority: int) -> PacketReceived:
    """VI_1's advertisement from its peer 10.0.0.7 at `priority`."""
    return builders.advert(
        source="10.0.0.7", priority=priority, addresses=("10.0.0.100", "10.0.0.101")
    )


def feed(instance: VrrpInstance, journal: status.Journal, event: Any, now: float) -> None:
    """Hand `event` to `instance` at `now`; the journal records its transitions."""
    for effect in instance.handle(event, now):
        if isinstance(effect, ReportTransition):
            journal.record_transition(effect, STARTED_AT + now)


STARTED_AT = 1_000_000.0  # the sample daemon's start, on the wall clock; core time 0 is then


@dataclass(frozen=True)
class Loaded:
    """A configuration text as a freshly started daemon holds it: its model, its plan and an
    empty journal; `status(...)` builds the status document from them."""

    config: Config
    plan: Plan
    journal: status.Journal

    def status(
        self,
        instances: dict[str, VrrpInstance],
        present_vips: frozenset[tuple[str, str]],
        now: float,
    ) -> dict[str, Any]:
        return status.build_status(
            plan=self.plan,
            instances=instances,
            groups={},
            director=Director(self.config, runner=ScriptRunner()),
            journal=self.journal,
            present_vips=present_vips,
            now=STARTED_AT + now,
            wall_offset=STARTED_AT,
        )


def parsed(text: str, filename: str = "<string>") -> Config:
    """`text` parsed as the file `filename`; an AssertionError with the diagnostics when the
    parser refuses it."""
    result = parse_text(text, filename)
    assert result.config is not None, result.diagnostics
    return result.config


def load(text: str) -> Loaded:
    """`text` parsed (it must be valid), planned, with the journal of a daemon started at
    STARTED_AT from /etc/keepalived/keepalived.conf."""
    config = parsed(text, "/etc/keepalived/keepalived.conf")
    journal = status.Journal(
        started_at=STARTED_AT,
        config_file="/etc/keepalived/keepalived.conf",
        config_checksum="0" * 64,
        config_loaded_at=STARTED_AT,
    )
    return Loaded(config=config, plan=plan(config), journal=journal)


def status_document() -> dict[str, Any]:
    loaded = load(CONFIG)
    the_plan, journal = loaded.plan, loaded.journal
    vi1 = VrrpInstance(the_plan.settings["VI_1"])
    vi2 = VrrpInstance(the_plan.settings["VI_2"])
    feed(vi1, journal, SourceAddressChanged(address="10.0.0.1"), 0.0)
    feed(vi1, journal, Started(), 0.0)
    deadline = vi1.next_deadline()
    assert deadline is not None
    feed(vi1, journal, TimerFired(), deadline)  # Master
    feed(vi1, journal, advert(200), deadline + 0.5)  # back to Backup
    feed(
        vi1, journal, TrackChanged(name="eth9", up=False, kind=TrackKind.INTERFACE), deadline + 0.6
    )
    bad_ttl = advert(200)
    feed(
        vi1,
        journal,
        PacketReceived(
            source=bad_ttl.source, destination=bad_ttl.destination, ttl=64, payload=bad_ttl.payload
        ),
        deadline + 0.7,
    )
    return loaded.status({"VI_1": vi1, "VI_2": vi2}, frozenset({("10.0.0.100", "eth0")}), now=10.0)
