"""`check_unicast_src` / `vrrp_check_unicast_src`: vipkeeper always does what they ask (with
unicast_peer configured, an advert from any other source is dropped), so the keywords load with
a warning that says so, not one that calls the check unsupported."""

from __future__ import annotations

from vipkeeper.config.load import parse_text

INSTANCE = """
global_defs {
    vrrp_check_unicast_src
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    unicast_src_ip 10.0.0.1
    check_unicast_src
    unicast_peer {
        10.0.0.2
    }
    virtual_ipaddress {
        10.0.0.100/24
    }
}
"""


def test_check_unicast_src_loads_with_a_warning_that_the_check_is_always_on() -> None:
    result = parse_text(INSTANCE)
    assert result.config is not None
    messages = [d.format() for d in result.diagnostics]
    for keyword in ("vrrp_check_unicast_src", "check_unicast_src"):
        (found,) = [m for m in messages if f" {keyword}: " in m]
        assert "any other source is always dropped" in found, found
        assert "warning" in found
