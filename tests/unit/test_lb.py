"""Desired load-balancer state: who takes traffic, the Maglev table, and diff() ordering."""

from __future__ import annotations

import pytest

from vipkeeper.core import maglev
from vipkeeper.core.lb import (
    AddDestination,
    AddService,
    ForwardingMethod,
    RealServer,
    RemoveDestination,
    RemoveService,
    Scheduler,
    UpdateDestination,
    UpdateService,
    VirtualServer,
    VirtualService,
    build_table,
    destinations,
    diff,
    forwarding_servers,
    lookup_table,
    table_size,
)
from vipkeeper.core.pool import Pool

WEB = VirtualService(address="172.16.9.1", port=80, hash_seed=0x1234)
RS1 = RealServer(address="192.168.0.54", port=80)
RS2 = RealServer(address="192.168.0.55", port=80)
SORRY = RealServer(address="192.168.0.99", port=80)


def rs(address: str, weight: int = 1) -> RealServer:
    return RealServer(address=address, port=80, weight=weight)


def test_service_needs_address_and_port_or_fwmark():
    with pytest.raises(ValueError):
        VirtualService(address="172.16.9.1")
    with pytest.raises(ValueError):
        VirtualService(fwmark=3, address="172.16.9.1", port=80)
    assert VirtualService(fwmark=3).key.fwmark == 3


def test_invalid_values_are_rejected():
    with pytest.raises(ValueError):
        RealServer(address="192.168.0.54", port=80, weight=-1)
    with pytest.raises(ValueError):
        VirtualService(address="172.16.9.1", port=70000)
    with pytest.raises(ValueError):
        VirtualService(address="172.16.9.1", port=80, table_size=250)
    with pytest.raises(ValueError):
        VirtualService(address="not-an-ip", port=80)


def test_weight_zero_server_stays_installed_but_takes_no_new_flows():
    vs = VirtualServer(service=WEB, real_servers=(rs("192.168.0.55", 0), RS1))
    assert destinations(vs) == (RS1, rs("192.168.0.55", 0))
    assert forwarding_servers(vs) == (RS1,)


def test_sorry_server_takes_over_when_no_server_has_weight():
    vs = VirtualServer(service=WEB, real_servers=(rs("192.168.0.54", 0),), sorry_server=SORRY)
    assert vs.sorry_active
    assert forwarding_servers(vs) == (SORRY,)
    assert destinations(vs) == (rs("192.168.0.54", 0), SORRY)


def test_sorry_server_takes_over_on_quorum_loss_and_real_servers_are_held_at_weight_zero():
    vs = VirtualServer(service=WEB, real_servers=(RS1, RS2), sorry_server=SORRY, in_quorum=False)
    assert forwarding_servers(vs) == (SORRY,)
    assert {s.weight for s in destinations(vs) if s != SORRY} == {0}


def test_a_virtual_server_serves_the_health_monitors_pool_as_it_is():
    pool = Pool(real_servers=(RS1, rs("192.168.0.55", 0)), sorry_server=SORRY, in_quorum=False)
    served = VirtualServer.serving(WEB, pool)
    assert served == VirtualServer(
        service=WEB, real_servers=pool.real_servers, sorry_server=SORRY, in_quorum=False
    )
    assert served.sorry_active == pool.sorry_active


def test_sorry_server_idle_while_in_quorum():
    vs = VirtualServer(service=WEB, real_servers=(RS1,), sorry_server=SORRY)
    assert not vs.sorry_active
    assert forwarding_servers(vs) == (RS1,)


def test_an_idle_sorry_server_in_the_pool_is_held_at_weight_zero():
    # The health monitor leaves the idle sorry server in the pool only with sorry_server_inhibit:
    # it is then installed at weight 0 (IPVS lists it, no new flow goes to it), and diff()
    # raises its weight when quorum is lost.
    idle = VirtualServer(service=WEB, real_servers=(RS1,), sorry_server=rs("192.168.0.99", 0))
    assert destinations(idle) == (RS1, rs("192.168.0.99", 0))
    assert forwarding_servers(idle) == (RS1,)
    lost = VirtualServer(service=WEB, real_servers=(RS1,), sorry_server=SORRY, in_quorum=False)
    assert diff([idle], [lost]) == [
        UpdateDestination(service=WEB, server=rs("192.168.0.54", 0), method=ForwardingMethod.DR),
        UpdateDestination(service=WEB, server=SORRY, method=ForwardingMethod.DR),
    ]


def test_table_size_follows_configured_servers_not_healthy_ones():
    healthy = VirtualServer(service=WEB, real_servers=(RS1, RS2))
    one_down = VirtualServer(service=WEB, real_servers=(RS1, rs("192.168.0.55", 0)))
    assert table_size(healthy) == table_size(one_down) == maglev.table_size_for(2)
    pinned = VirtualServer(
        service=VirtualService(address="172.16.9.1", port=80, table_size=1021), real_servers=(RS1,)
    )
    assert table_size(pinned) == 1021


def test_lookup_table_maps_every_bucket_to_a_forwarding_server():
    vs = VirtualServer(service=WEB, real_servers=(RS1, RS2, rs("192.168.0.56", 0)))
    table = lookup_table(vs)
    assert len(table) == maglev.table_size_for(3)
    assert set(table) == {RS1, RS2}


def test_server_going_to_weight_zero_keeps_the_other_servers_buckets():
    three = (RS1, RS2, rs("192.168.0.56"))
    before = lookup_table(VirtualServer(service=WEB, real_servers=three))
    after = lookup_table(VirtualServer(service=WEB, real_servers=(RS1, RS2, rs("192.168.0.56", 0))))
    kept = sum(1 for old, new in zip(before, after, strict=True) if old == new)
    lost = before.count(rs("192.168.0.56"))
    assert kept >= 0.9 * (len(before) - lost)


def test_a_failed_server_moves_only_its_own_buckets_against_the_configured_pool():
    pool = (RS1, RS2, rs("192.168.0.56"), rs("192.168.0.57"))
    service = VirtualService(
        address="172.16.9.1",
        port=80,
        table_size=maglev.table_size_for(4),
        configured_weights=tuple(sorted((s.name, s.weight) for s in pool)),
    )
    before = lookup_table(VirtualServer(service=service, real_servers=pool))
    after = lookup_table(VirtualServer(service=service, real_servers=pool[:2] + pool[3:]))
    changed = {i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new}
    assert changed == {i for i, server in enumerate(before) if server == pool[2]}


def test_build_table_respects_weights():
    table = build_table(WEB, [rs("192.168.0.54", 1), rs("192.168.0.55", 3)])
    share = table.count(rs("192.168.0.55", 3)) / len(table)
    assert share == pytest.approx(0.75, abs=0.02)


def test_build_table_is_independent_of_server_order():
    servers = [rs(f"192.168.0.{i}", i % 3 + 1) for i in range(50, 60)]
    assert build_table(WEB, servers) == build_table(WEB, list(reversed(servers)))


def test_build_table_empty_without_servers():
    assert build_table(WEB, []) == ()


def test_diff_adds_new_service_then_its_destinations():
    new = [VirtualServer(service=WEB, real_servers=(RS2, RS1))]
    assert diff([], new) == [
        AddService(service=WEB),
        AddDestination(service=WEB, server=RS1, method=ForwardingMethod.DR),
        AddDestination(service=WEB, server=RS2, method=ForwardingMethod.DR),
    ]


def test_diff_of_identical_states_is_empty():
    state = [VirtualServer(service=WEB, real_servers=(RS1, RS2))]
    assert diff(state, state) == []


def test_diff_removes_a_vanished_service_in_one_operation():
    old = [VirtualServer(service=WEB, real_servers=(RS1, RS2))]
    assert diff(old, []) == [RemoveService(service=WEB)]


def test_diff_adds_before_it_removes_so_the_pool_never_empties():
    old = [VirtualServer(service=WEB, real_servers=(RS1,))]
    new = [VirtualServer(service=WEB, real_servers=(RS2,))]
    assert diff(old, new) == [
        AddDestination(service=WEB, server=RS2, method=ForwardingMethod.DR),
        RemoveDestination(service=WEB, server=RS1),
    ]


def test_diff_updates_weight_in_place():
    old = [VirtualServer(service=WEB, real_servers=(RS1, RS2))]
    new = [VirtualServer(service=WEB, real_servers=(RS1, rs("192.168.0.55", 0)))]
    assert diff(old, new) == [
        UpdateDestination(service=WEB, server=rs("192.168.0.55", 0), method=ForwardingMethod.DR)
    ]


def test_diff_updates_scheduler_without_touching_destinations():
    mh = VirtualService(address="172.16.9.1", port=80, scheduler=Scheduler.MAGLEV_HASH)
    old = [VirtualServer(service=WEB, real_servers=(RS1,))]
    new = [VirtualServer(service=mh, real_servers=(RS1,))]
    assert diff(old, new) == [UpdateService(old=WEB, new=mh)]


def test_diff_re_sends_destinations_when_the_method_changes():
    nat = VirtualService(address="172.16.9.1", port=80, method=ForwardingMethod.NAT)
    old = [VirtualServer(service=WEB, real_servers=(RS1,))]
    new = [VirtualServer(service=nat, real_servers=(RS1,))]
    assert diff(old, new) == [
        UpdateDestination(service=nat, server=RS1, method=ForwardingMethod.NAT)
    ]


def test_diff_switches_to_sorry_server_on_quorum_loss():
    # without sorry_server_inhibit the health monitor leaves the idle sorry server out
    old = [VirtualServer(service=WEB, real_servers=(RS1,))]
    new = [VirtualServer(service=WEB, real_servers=(RS1,), sorry_server=SORRY, in_quorum=False)]
    assert diff(old, new) == [
        UpdateDestination(service=WEB, server=rs("192.168.0.54", 0), method=ForwardingMethod.DR),
        AddDestination(service=WEB, server=SORRY, method=ForwardingMethod.DR),
    ]


def test_diff_rejects_duplicate_services():
    vs = VirtualServer(service=WEB, real_servers=(RS1,))
    with pytest.raises(ValueError, match="duplicate"):
        diff([], [vs, vs])


def test_duplicate_real_server_is_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        VirtualServer(service=WEB, real_servers=(RS1, rs("192.168.0.54", 5)))
