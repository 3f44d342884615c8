"""keepalived.conf settings reach the core as keepalived users expect them to."""

from __future__ import annotations

from vipkeeper.assemble import plan
from vipkeeper.config import parse_text
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp import State
from vipkeeper.testing.samples import parsed

CONFIG = """
global_defs {
    vrrp_garp_lower_prio_repeat 2
    vrrp_higher_prio_send_advert
}
vrrp_script chk_web {
    script "/bin/true"
    weight -20
}
vrrp_instance WEB {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        172.16.9.1/16 dev eth0 label eth0:vip
        172.16.9.2
    }
    track_interface {
        eth1 weight -30
    }
    track_script {
        chk_web
    }
    garp_master_repeat 3
}
vrrp_instance DB {
    interface eth1
    virtual_router_id 52
    priority 100
    version 3
    advert_int 0.5
    dont_track_primary
    unicast_src_ip 192.168.0.53
    unicast_peer {
        192.168.0.57
    }
    virtual_ipaddress {
        192.168.0.100/24
    }
}
vrrp_instance V6 {
    interface eth0
    virtual_router_id 53
    virtual_ipaddress {
        fd00::100/64
    }
}
vrrp_sync_group PAIR {
    group {
        WEB
        DB
    }
}
"""


def test_instance_settings_follow_the_configuration() -> None:
    config = parse_text(CONFIG).config
    assert config is not None
    result = plan(config)
    web, db, v6 = result.settings["WEB"], result.settings["DB"], result.settings["V6"]

    assert web.virtual_addresses == (
        VirtualAddress(address="172.16.9.1", prefixlen=16, dev="eth0", label="eth0:vip"),
        VirtualAddress(address="172.16.9.2", prefixlen=32, dev="eth0"),
    )
    assert web.initial_state is State.MASTER and db.initial_state is State.BACKUP
    assert web.auth_pass == "s3cret" and web.version == 2
    # The instance's own interface is tracked (FAULT when down) unless dont_track_primary.
    assert web.track_interfaces == {"eth1": -30, "eth0": 0}
    assert db.track_interfaces == {}
    # A track_script without its own weight takes the vrrp_script's.
    assert web.track_scripts == {"chk_web": -20}
    # garp_lower_prio_repeat from global_defs; its delay falls back to garp_master_delay.
    assert web.garp_master_repeat == 3
    assert web.garp_lower_prio_repeat == 2 and web.garp_lower_prio_delay == 5.0
    assert web.higher_prio_send_advert is True

    assert db.version == 3 and db.advert_int == 0.5
    assert db.unicast_src_ip == "192.168.0.53" and db.unicast_peers == ("192.168.0.57",)
    # IPv6 addresses mean VRRPv3 and the IPv6 family.
    assert v6.family == 6 and v6.version == 3 and v6.virtual_addresses[0].prefixlen == 64


def test_sync_group_members_route_through_their_group() -> None:
    config = parse_text(CONFIG).config
    assert config is not None
    result = plan(config)
    assert result.groups == {"PAIR": ("WEB", "DB")}
    assert result.solo == ("V6",)
    routes = result.routes()
    assert routes[("eth0", 4, 51)] == ("PAIR", "WEB")
    assert routes[("eth1", 4, 52)] == ("PAIR", "DB")
    assert routes[("eth0", 6, 53)] == ("V6", None)


def _family_case(body: str) -> tuple[int | None, list[str]]:
    """(the family the core is handed, or None if refused; the diagnostics' texts)."""
    result = parse_text(f"vrrp_instance X {{\n interface eth0\n virtual_router_id 9\n{body}}}\n")
    messages = [d.format() for d in result.diagnostics]
    if result.config is None:
        return None, messages
    return plan(result.config).settings["X"].family, messages


def test_native_ipv6_makes_the_instance_ipv6_in_the_model_and_the_core_alike() -> None:
    config = parsed(
        "vrrp_instance X {\n interface eth0\n virtual_router_id 9\n native_ipv6\n"
        " virtual_ipaddress {\n  fd00::1/64\n }\n virtual_ipaddress_excluded {\n  10.0.0.1\n }\n}\n"
    )
    (instance,) = config.vrrp_instances
    settings = plan(config).settings["X"]
    assert instance.family == settings.family == 6
    assert settings.version == 3


def test_instance_without_virtual_address_is_refused_when_ipv6_or_vrrpv3() -> None:
    family, messages = _family_case(" native_ipv6\n")
    assert family is None
    assert any(":1:" in m and "needs at least one" in m for m in messages), messages
    family, messages = _family_case(" version 3\n")
    assert family is None, messages


def test_vrrpv2_ipv4_instance_without_virtual_address_is_kept_with_a_warning() -> None:
    family, messages = _family_case("")
    assert family == 4
    assert any("no virtual_ipaddress" in m for m in messages), messages


def test_native_ipv6_with_an_ipv4_virtual_address_is_refused_where_the_address_is() -> None:
    family, messages = _family_case(" native_ipv6\n virtual_ipaddress {\n  10.0.0.1\n }\n")
    assert family is None
    assert any(":6:3:" in m and "native_ipv6" in m for m in messages), messages


def test_unicast_source_decides_the_family_when_nothing_else_does() -> None:
    family, _ = _family_case(" unicast_src_ip fd00::5\n unicast_peer {\n  fd00::6\n }\n")
    assert family is None  # IPv6 without a virtual address: refused like keepalived
    family, _ = _family_case(" unicast_src_ip 10.0.0.5\n unicast_peer {\n  10.0.0.6\n }\n")
    assert family == 4
