"""Reloads that apply the difference: the core's in-place reconfiguration, the reload plan, the
operator's change list and the health core carrying real servers over.

Proves: a Master that gains and loses VIPs on a reload stays Master with its timers, adds the
new VIPs with gratuitous ARP and removes the old ones (no advert burst, no transition), and its
next adverts carry the new address list; a Backup takes a new priority in place; a change the
core cannot take in place (an interface) is refused; the reload plan keeps unchanged instances,
reconfigures priority/VIP changes, restarts other changes and whole sync groups whose
membership changed; the change list names instances, virtual servers and real servers added,
removed and changed; a real server whose settings did not change keeps its health (down stays
down, with its failure count and next check time) while a changed one starts afresh.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from vipkeeper import reload
from vipkeeper.assemble import plan
from vipkeeper.config import parse_text
from vipkeeper.core import health, vrrp_wire
from vipkeeper.core.effects import (
    AddVips,
    DelVips,
    ReportTransition,
    SendAdvert,
    SendGratuitous,
    VirtualAddress,
)
from vipkeeper.core.events import Reconfigured, SourceAddressChanged, Started, TimerFired
from vipkeeper.core.vrrp import InstanceSettings, State, VrrpInstance
from vipkeeper.director import health_spec

VIP = VirtualAddress(address="10.0.0.100", prefixlen=24, dev="eth0")
VIP2 = VirtualAddress(address="10.0.0.101", prefixlen=24, dev="eth0")


def _master() -> tuple[VrrpInstance, float]:
    settings = InstanceSettings(
        name="VI_1", interface="eth0", vrid=51, priority=255, virtual_addresses=(VIP,)
    )
    instance = VrrpInstance(settings)
    instance.handle(SourceAddressChanged(address="10.0.0.1"), 0.0)
    instance.handle(Started(), 0.0)
    assert instance.state is State.MASTER
    return instance, 0.0


def test_a_master_takes_new_vips_in_place() -> None:
    instance, now = _master()
    deadline = instance.next_deadline()
    sent_before = instance.stats.adverts_sent
    new = dataclasses.replace(instance.settings, virtual_addresses=(VIP2,))
    effects = instance.handle(Reconfigured(settings=new), now + 0.1)
    assert instance.state is State.MASTER
    assert not [e for e in effects if isinstance(e, ReportTransition | SendAdvert)]
    assert DelVips(addresses=(VIP,)) in effects
    assert AddVips(addresses=(VIP2,)) in effects
    assert any(isinstance(e, SendGratuitous) and e.addresses == (VIP2,) for e in effects)
    assert instance.next_deadline() == deadline  # the advert timer runs on
    assert instance.stats.adverts_sent == sent_before
    assert deadline is not None
    adverts = [e for e in instance.handle(TimerFired(), deadline) if isinstance(e, SendAdvert)]
    decoded = [
        vrrp_wire.decode(a.payload, source=a.source, destination=a.destination) for a in adverts
    ]
    assert [d.addresses for d in decoded] == [("10.0.0.101",)]


def test_a_backup_takes_a_new_priority_in_place() -> None:
    settings = InstanceSettings(name="VI_1", interface="eth0", vrid=51, priority=100)
    instance = VrrpInstance(settings)
    instance.handle(SourceAddressChanged(address="10.0.0.1"), 0.0)
    instance.handle(Started(), 0.0)
    deadline = instance.next_deadline()
    effects = instance.handle(
        Reconfigured(settings=dataclasses.replace(settings, priority=90)), 0.5
    )
    assert effects == []
    assert (instance.state, instance.priority) == (State.BACKUP, 90)
    assert instance.next_deadline() == deadline


def test_other_changes_are_not_taken_in_place() -> None:
    instance, now = _master()
    moved = dataclasses.replace(instance.settings, interface="eth1")
    assert not instance.can_reconfigure(moved)
    with pytest.raises(ValueError, match="in place"):
        instance.handle(Reconfigured(settings=moved), now)


BASE = """
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority {p1}
    virtual_ipaddress {{
{vips}
    }}
}}
vrrp_instance VI_2 {{
    interface eth0
    virtual_router_id 52
    priority 100
    advert_int {advert}
    virtual_ipaddress {{
        10.0.0.200
    }}
}}
vrrp_instance VI_3 {{
    interface eth0
    virtual_router_id 53
    priority 100
    virtual_ipaddress {{
        10.0.0.210
    }}
}}
{group}
virtual_server 10.0.0.100 80 {{
    delay_loop 5
    lb_algo rr
    lb_kind NAT
    protocol TCP
{servers}
}}
"""

SERVER = """    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout {timeout}
        }}
    }}"""


def _config(
    *,
    p1: int = 150,
    vips: tuple[str, ...] = ("10.0.0.100",),
    advert: int = 1,
    group: bool = False,
    servers: tuple[tuple[str, int], ...] = (("10.0.0.2", 1), ("10.0.0.3", 1)),
):  # type: ignore[no-untyped-def]
    text = BASE.format(
        p1=p1,
        vips="\n".join(f"        {v}" for v in vips),
        advert=advert,
        group="vrrp_sync_group G {\n    group {\n        VI_3\n    }\n}" if group else "",
        servers="\n".join(SERVER.format(address=a, timeout=t) for a, t in servers),
    )
    result = parse_text(text, "k.conf")
    assert result.config is not None, [d.format() for d in result.diagnostics]
    return result.config


def _plan_between(old_config, new_config):  # type: ignore[no-untyped-def]
    old, new = plan(old_config), plan(new_config)
    running = {name: VrrpInstance(settings) for name, settings in old.settings.items()}
    return reload.plan_instances(
        old, new, lambda name, settings: running[name].can_reconfigure(settings)
    )


def test_unchanged_file_keeps_everything() -> None:
    steps = _plan_between(_config(), _config())
    assert steps.kept == {"VI_1", "VI_2", "VI_3"}
    assert not steps.reconfigured and not steps.restarted_machines
    assert reload.changes(_config(), _config(), plan(_config()), plan(_config())).empty


def test_priority_and_vip_changes_are_in_place_and_others_restart() -> None:
    old = _config()
    new = _config(p1=90, vips=("10.0.0.100", "10.0.0.150"), advert=2)
    steps = _plan_between(old, new)
    assert set(steps.reconfigured) == {"VI_1"}
    assert steps.restarted_machines == {"VI_2"}
    assert steps.kept == {"VI_3"}


def test_a_sync_group_whose_membership_changed_restarts() -> None:
    steps = _plan_between(_config(), _config(group=True))
    assert steps.restarted_machines == {"VI_3"}
    assert "VI_3" not in steps.kept


def test_change_list_names_servers_and_instances() -> None:
    old = _config()
    new = _config(p1=90, servers=(("10.0.0.2", 2), ("10.0.0.4", 1)))
    changes = reload.changes(old, new, plan(old), plan(new))
    assert changes.instances_changed == ("VI_1",)
    assert changes.real_servers_added == ("TCP 10.0.0.100:80 -> 10.0.0.4:80",)
    assert changes.real_servers_removed == ("TCP 10.0.0.100:80 -> 10.0.0.3:80",)
    assert changes.real_servers_changed == ("TCP 10.0.0.100:80 -> 10.0.0.2:80",)
    assert changes.virtual_servers_changed == ()
    assert set(changes.as_dict()) == {f.name for f in dataclasses.fields(reload.Changes)}


def test_change_list_names_an_ipv6_real_server_as_the_status_does() -> None:
    def config(*servers: str) -> str:
        blocks = "".join(f"    real_server {address} {{\n    }}\n" for address in servers)
        return f"virtual_server 2001:db8::100 80 {{\n    lb_kind DR\n{blocks}}}\n"

    old = parse_text(config("2001:db8::2")).config
    new = parse_text(config("2001:db8::2", "2001:db8::3")).config
    changes = reload.changes(old, new, plan(old), plan(new))
    # Without a port of its own, the real server is reached on the virtual server's.
    assert changes.real_servers_added == ("TCP [2001:db8::100]:80 -> [2001:db8::3]:80",)


def _monitor(config) -> health.HealthMonitor:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    return health.HealthMonitor(health_spec(vs, rng) for vs in config.virtual_servers)


def test_unchanged_real_servers_keep_their_health_across_a_reload() -> None:
    old_config = _config()
    old = _monitor(old_config)
    old.start(0.0)
    key = "TCP 10.0.0.100:80"
    two = health.Endpoint(address="10.0.0.2", port=80)
    three = health.Endpoint(address="10.0.0.3", port=80)
    now = 0.0
    # Fail both servers until they are down (retry 1: two failures).
    while old.server_is_up(key, two) or old.server_is_up(key, three):
        deadline = old.next_deadline()
        assert deadline is not None
        now = deadline
        for order in old.handle_timer(now):
            assert isinstance(order, health.RunCheck)
            old.handle(health.CheckFailed(checker=order.checker, reason="refused"), now)
    next_two = old.next_deadline()
    # 10.0.0.3 gets a new connect_timeout: its settings changed (the Director compares the
    # configuration; the core compares what it knows), it starts afresh (up).
    new = _monitor(_config(servers=(("10.0.0.2", 1), ("10.0.0.3", 3))))
    carried = new.carry_over(old, now, unchanged=lambda _vs, server: server == two)
    assert carried == [(key, two)]
    assert not new.server_is_up(key, two)
    assert new.server_is_up(key, three)
    pools = new.start(now)
    # Quorum, lost before the reload, is carried over too: the next server change regains it.
    three_only = health.Pool(real_servers=(health.RealServer.at(three, 1),), in_quorum=False)
    assert pools == [health.PoolChanged(virtual_server=key, pool=three_only)]
    assert next_two is not None and new.next_deadline() <= next_two + 5  # type: ignore[operator]


def test_lines_moving_in_the_file_change_nothing() -> None:
    old = _config()
    new = _config(vips=("10.0.0.100", "10.0.0.150", "10.0.0.151"))  # servers two lines lower
    changes = reload.changes(old, new, plan(old), plan(new))
    assert changes.instances_changed == ("VI_1",)
    assert (changes.virtual_servers_changed, changes.real_servers_changed) == ((), ())
    assert not reload.lvs_differs(old, old)
