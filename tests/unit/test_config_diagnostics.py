"""Warnings for what keepalived knows but vipkeeper ignores; located errors for everything wrong."""

from __future__ import annotations

import pytest

from vipkeeper.config import Severity, parse_text
from vipkeeper.config.diagnostics import Diagnostic

INSTANCE = """vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {{
        192.0.2.10
    }}
{extra}
}}
"""


def instance(extra: str) -> str:
    return INSTANCE.format(extra=extra)


def only(diagnostics: list[Diagnostic], severity: Severity) -> list[Diagnostic]:
    return [item for item in diagnostics if item.severity is severity]


def test_known_but_unsupported_keyword_is_a_located_warning_and_config_stays_usable() -> None:
    result = parse_text(instance("    smtp_alert\n    use_ipvlan ipv.51"), "k.conf")
    assert result.config is not None
    messages = [item.format() for item in result.diagnostics]
    assert messages == [
        "k.conf:7:5: warning: smtp_alert: e-mail alerts are not supported, ignored",
        "k.conf:8:5: warning: use_ipvlan: ipvlan interfaces are not supported, ignored",
    ]


def test_unknown_keyword_is_an_error_with_a_close_match_suggestion() -> None:
    result = parse_text(instance("    prioirty 100"), "k.conf")
    assert result.config is None
    (error,) = result.diagnostics
    assert error.format() == (
        "k.conf:7:5: error: prioirty: unknown keyword in vrrp_instance; did you mean 'priority'?"
    )


def test_unknown_keyword_without_close_match_lists_what_vipkeeper_uses() -> None:
    result = parse_text("global_defs {\n  zzzzzz 1\n}\n")
    (error,) = result.diagnostics
    assert error.is_error and "router_id" in error.message and "lvs_backend" in error.message


def test_unknown_keyword_inside_an_ignored_block_is_still_an_error() -> None:
    result = parse_text("bfd_instance B {\n  neighbor_ip 192.0.2.1\n  mulitplier 3\n}\n")
    kinds = [(item.severity, item.line) for item in result.diagnostics]
    assert kinds == [(Severity.WARNING, 1), (Severity.ERROR, 3)]
    assert "did you mean 'multiplier'" in result.diagnostics[1].message


@pytest.mark.parametrize(
    ("extra", "line", "needle"),
    [
        ("    priority 0", 7, "0 is reserved"),
        ("    priority 256", 7, "valid: 1..255"),
        ("    priority high", 7, "not a whole number"),
        ("    virtual_router_id 300", 7, "valid: 1..255"),
        ("    advert_int 0", 7, "valid: more than 0"),
        ("    advert_int 1.5", 7, "whole seconds"),
        ("    version 3\n    advert_int 41", 8, "centiseconds"),
        ("    version 3\n    advert_int 0.125", 8, "steps of 0.01"),
        ("    state LEADER", 7, "valid: MASTER|BACKUP"),
        ("    unicast_src_ip 10.0.0.300", 7, "not a valid IPv4 or IPv6 address"),
        (
            "    authentication {\n        auth_type PASS\n        auth_pass 123456789\n    }",
            7,
            "at most 8",
        ),
        (
            "    authentication {\n        auth_type AH\n        auth_pass x\n    }",
            7,
            "AH authentication is not supported",
        ),
        ("    track_script {\n        chk_missing\n    }", 8, "no vrrp_script of that name"),
        ("    track_interface {\n        eth1 weight 300\n    }", 8, "valid: -253..253"),
        ("    priority 255\n    state BACKUP", 8, "owns the virtual addresses"),
        ("    priority 255\n    nopreempt", 8, "always preempts"),
        (
            "    version 2\n    virtual_ipaddress {\n        2001:db8::1\n    }",
            9,
            "is IPv6 but the first",
        ),
        ("    preempt_delay 2000", 7, "valid: 0 to 1000"),
        ('    notify_master "/bin/x \'open"', 7, "cannot split"),
    ],
)
def test_bad_vrrp_instance_values_are_located_errors(extra: str, line: int, needle: str) -> None:
    result = parse_text(instance(extra), "k.conf")
    assert result.config is None
    errors = only(result.diagnostics, Severity.ERROR)
    assert errors, result.diagnostics
    assert any(item.line == line and needle in item.message for item in errors), errors


def test_ipv6_instance_with_explicit_version_2_is_rejected() -> None:
    text = (
        "vrrp_instance V6 {\n interface eth0\n virtual_router_id 5\n version 2\n"
        " virtual_ipaddress {\n  2001:db8::1\n }\n}\n"
    )
    (error,) = parse_text(text).diagnostics
    assert error.line == 4 and "IPv4 only" in error.message


def test_instance_without_interface_or_vrid_says_what_is_missing() -> None:
    result = parse_text("vrrp_instance X {\n  priority 10\n}\n")
    messages = [item.message for item in only(result.diagnostics, Severity.ERROR)]
    assert any("missing `interface IFNAME`" in message for message in messages)
    assert any("missing `virtual_router_id 1..255`" in message for message in messages)


def test_instance_in_two_sync_groups_is_an_error_at_the_second_mention() -> None:
    text = (
        instance("")
        + "vrrp_sync_group A {\n group {\n  VI_1\n }\n}\n"
        + "vrrp_sync_group B {\n group {\n  VI_1\n }\n}\n"
    )
    errors = only(parse_text(text).diagnostics, Severity.ERROR)
    assert [(item.line, "already in sync group A" in item.message) for item in errors] == [
        (16, True)
    ]


def test_sync_group_member_typo_gets_a_suggestion() -> None:
    text = instance("") + "vrrp_sync_group A {\n group {\n  VI_l\n }\n}\n"
    errors = only(parse_text(text).diagnostics, Severity.ERROR)
    assert len(errors) == 1 and "did you mean 'VI_1'" in errors[0].message


def test_same_vrid_on_same_interface_is_an_error() -> None:
    text = instance("") + instance("").replace("VI_1", "VI_2")
    errors = only(parse_text(text).diagnostics, Severity.ERROR)
    assert len(errors) == 1 and "already used by VI_1" in errors[0].message


def test_strict_mode_rejects_unicast_peers_and_authentication() -> None:
    text = "global_defs {\n vrrp_strict\n}\n" + instance(
        "    unicast_peer {\n        192.0.2.2\n    }"
    )
    errors = only(parse_text(text).diagnostics, Severity.ERROR)
    assert any("forbids unicast_peer" in item.message for item in errors)


@pytest.mark.parametrize(
    ("body", "severity", "needle"),
    [
        ("lb_algo lblc", Severity.WARNING, "using wrr"),
        ("lb_algo fastest", Severity.ERROR, "valid: rr|wrr|sh|mh|lc|wlc"),
        ("lb_kind TUN", Severity.WARNING, "tunnelling is not supported"),
        ("lb_kind ROUTE", Severity.ERROR, "valid: DR|NAT"),
        ("protocol SCTP", Severity.WARNING, "SCTP"),
        ("protocol ICMP", Severity.ERROR, "valid: TCP|UDP"),
        ("delay_loop -1", Severity.ERROR, "out of range"),
        ("sorry_server 10.0.0.9 99999", Severity.ERROR, "valid: 1..65535"),
        ("real_server 10.0.1.1 8080 {\n}", Severity.ERROR, "direct routing (DR) cannot"),
        ("real_server 2001:db8::1 80 {\n}", Severity.ERROR, "same family"),
        (
            "real_server 10.0.1.1 80 {\n HTTP_GET {\n connect_timeout 1\n }\n}",
            Severity.ERROR,
            "at least one `url",
        ),
        (
            "real_server 10.0.1.1 80 {\n HTTP_GET {\n url {\n path /\n digest xyz\n }\n }\n}",
            Severity.ERROR,
            "32 hexadecimal",
        ),
        ("real_server 10.0.1.1 80 {\n SSL_GET {\n }\n}", Severity.WARNING, "TLS"),
        (
            "real_server 10.0.1.1 80 {\n MISC_CHECK {\n misc_timeout 3\n }\n}",
            Severity.ERROR,
            "misc_path",
        ),
    ],
)
def test_virtual_server_values(body: str, severity: Severity, needle: str) -> None:
    text = f"virtual_server 10.0.0.1 80 {{\nlb_kind DR\n{body}\n}}\n"
    result = parse_text(text)
    matching = [item for item in result.diagnostics if needle in item.message]
    assert matching and all(item.severity is severity for item in matching), result.diagnostics
    assert all(item.line >= 3 for item in matching)
    assert (result.config is None) == (severity is Severity.ERROR)


def test_unsupported_scheduler_falls_back_to_wrr() -> None:
    result = parse_text("virtual_server 10.0.0.1 80 {\n lvs_sched lblc\n}\n")
    assert result.config is not None
    assert result.config.virtual_servers[0].scheduler.value == "wrr"


def test_duplicate_virtual_server_is_an_error() -> None:
    text = "virtual_server 10.0.0.1 80 {\n}\nvirtual_server 10.0.0.1 80 {\n}\n"
    errors = only(parse_text(text).diagnostics, Severity.ERROR)
    assert [item.line for item in errors] == [3]


def test_repeated_simple_keyword_warns_and_last_value_wins() -> None:
    result = parse_text(instance("    priority 10\n    priority 20"))
    assert result.config is not None
    assert result.config.vrrp_instances[0].priority == 20
    (warning,) = result.diagnostics
    assert warning.line == 8 and "also set at line 7" in warning.message


def test_value_on_a_block_keyword_and_block_on_a_value_keyword_are_errors() -> None:
    result = parse_text(instance("    priority 5 {\n    }\n    virtual_routes"))
    messages = [item.message for item in only(result.diagnostics, Severity.ERROR)]
    assert "priority does not take a { } block" in messages
    assert "virtual_routes needs a { } block after it" in messages


def test_conditional_and_parameter_lines_are_warned_and_skipped() -> None:
    result = parse_text("$PRIO=100\n@main global_defs {\n router_id x\n}\n")
    assert [item.severity for item in result.diagnostics] == [Severity.WARNING, Severity.WARNING]
    assert result.config is not None and result.config.global_defs.router_id is None


def test_control_characters_quoted_from_the_file_are_escaped_in_messages() -> None:
    from vipkeeper.config import parse_text

    result = parse_text('"\r\tbogus" 1\n', "ctrl.conf")
    lines = [d.format() for d in result.diagnostics]
    assert lines, "a bogus keyword must be reported"
    for line in lines:
        assert "\r" not in line and "\t" not in line
        assert line.startswith("ctrl.conf:1:")


def test_a_keyword_with_spaces_from_a_stray_quote_is_shown_quoted() -> None:
    from vipkeeper.config import parse_text

    result = parse_text('" Configuration File" 1\n', "quote.conf")
    lines = [d.format() for d in result.diagnostics]
    assert lines, "a bogus keyword must be reported"
    assert lines[0].startswith("quote.conf:1:1: error: ' Configuration File"), lines[0]


def test_use_vmac_names_the_macvlan_vrrp_vrid_by_default_and_carries_the_vips() -> None:
    result = parse_text(instance("    use_vmac"), "k.conf")
    assert result.config is not None and result.diagnostics == []
    (vrrp,) = result.config.vrrp_instances
    assert vrrp.use_vmac == "vrrp.51"
    assert vrrp.advert_interface == "vrrp.51"
    assert [vrrp.vip_device(vip) for vip in vrrp.virtual_ipaddresses] == ["vrrp.51"]


def test_use_vmac_with_a_name_and_vmac_xmit_base_keeps_adverts_on_the_interface() -> None:
    result = parse_text(instance("    use_vmac vmac51\n    vmac_xmit_base"), "k.conf")
    assert result.config is not None and result.diagnostics == []
    (vrrp,) = result.config.vrrp_instances
    assert (vrrp.use_vmac, vrrp.vmac_xmit_base, vrrp.advert_interface) == ("vmac51", True, "eth0")
    assert [vrrp.vip_device(vip) for vip in vrrp.virtual_ipaddresses] == ["vmac51"]


def test_use_vmac_refuses_a_name_longer_than_an_interface_name() -> None:
    result = parse_text(instance("    use_vmac vrrp.0123456789ab"), "k.conf")
    assert result.config is None
    (error,) = result.diagnostics
    assert error.format().startswith("k.conf:7:14: error: use_vmac: 'vrrp.0123456789ab' is longer")


def test_vmac_xmit_base_without_use_vmac_is_a_located_warning() -> None:
    result = parse_text(instance("    vmac_xmit_base"), "k.conf")
    assert result.config is not None
    assert [d.format() for d in result.diagnostics] == [
        "k.conf:7:5: warning: vmac_xmit_base: has no effect without use_vmac, ignored"
    ]
    assert result.config.vrrp_instances[0].vmac_xmit_base is False


def test_use_vmac_on_an_ipv6_instance_is_a_located_warning_and_ignored() -> None:
    text = INSTANCE.replace("192.0.2.10", "2001:db8::10").format(extra="    use_vmac")
    result = parse_text(text, "k.conf")
    assert result.config is not None
    assert [d.format() for d in result.diagnostics] == [
        "k.conf:7:5: warning: use_vmac: the virtual MAC is supported for IPv4 instances only"
        " (the interface's own MAC is used), ignored"
    ]
    (vrrp,) = result.config.vrrp_instances
    assert (vrrp.use_vmac, vrrp.advert_interface) == (None, "eth0")
