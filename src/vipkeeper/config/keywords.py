"""What keepalived knows: the keyword set of every block of keepalived.conf.

This module owns the vocabulary of keepalived 2.2 (taken, as facts, from the keepalived.conf(5)
manual), block by block, and the reasons vipkeeper gives when it ignores a keyword it does not
implement. It is what lets `vipkeeper check` tell "keepalived knows this, vipkeeper ignores it"
(a warning) from "nobody knows this" (an error, with close-match suggestions).

It holds data only: no parsing, no model, no I/O. What vipkeeper *supports* is decided where the
keywords are turned into the model (`build`), and a test checks that set is inside this one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LINES = "<lines>"
"""Marker for a sub-block whose lines are data (addresses, names), not keywords."""


@dataclass(frozen=True)
class BlockSchema:
    """The keywords one kind of block accepts; each maps to the schema of the block it opens."""

    name: str
    keywords: Mapping[str, str | None]
    lines: bool = False

    def knows(self, keyword: str) -> bool:
        return keyword in self.keywords

    def suggestions(self, keyword: str, limit: int = 3) -> list[str]:
        return difflib.get_close_matches(keyword, list(self.keywords), n=limit, cutoff=0.6)


def _simple(names: str) -> dict[str, str | None]:
    return dict.fromkeys(names.split())


def _lists(names: str) -> dict[str, str | None]:
    return dict.fromkeys(names.split(), LINES)


_TOP = {
    **_simple(
        "net_namespace net_namespace_ipvs namespace_with_ipsets instance use_pid_dir "
        "linkbeat_use_polling child_wait_time"
    ),
    **_lists(
        "linkbeat_interfaces static_ipaddress static_routes static_rules "
        "interface_up_down_delays virtual_server_group"
    ),
    "global_defs": "global_defs",
    "track_group": "track_group",
    "track_file": "track_file",
    "vrrp_track_file": "track_file",
    "vrrp_track_process": "vrrp_track_process",
    "bfd_instance": "bfd_instance",
    "vrrp_script": "vrrp_script",
    "vrrp_sync_group": "vrrp_sync_group",
    "garp_group": "garp_group",
    "vrrp_instance": "vrrp_instance",
    "virtual_server": "virtual_server",
    "SSL": "SSL",
}

_GLOBAL_DEFS = {
    **_simple(
        "tmp_config_directory config_save_dir process_names process_name vrrp_process_name "
        "checker_process_name bfd_process_name startup_script startup_script_timeout "
        "shutdown_script shutdown_script_timeout notification_email_from smtp_server "
        "smtp_helo_name smtp_connect_timeout smtp_alert smtp_alert_vrrp smtp_alert_checker "
        "checker_log_all_failures no_email_faults router_id vrrp_mcast_group4 vrrp_mcast_group6 "
        "default_interface lvs_sync_daemon lvs_timeouts lvs_flush lvs_flush_on_stop "
        "vrrp_garp_master_delay vrrp_garp_master_repeat vrrp_garp_lower_prio_delay "
        "vrrp_down_timer_adverts vrrp_garp_lower_prio_repeat vrrp_garp_master_refresh "
        "vrrp_garp_master_refresh_repeat vrrp_garp_interval vrrp_gna_interval vrrp_min_garp "
        "vrrp_garp_extra_if vrrp_lower_prio_no_advert vrrp_higher_prio_send_advert vrrp_version "
        "nftables nftables_priority nftables_counters nftables_ifindex nftables_ipvs "
        "nftables_ipvs_priority nftables_ipvs_start_fwmark vrrp_iptables vrrp_ipsets "
        "disable_local_igmp vrrp_check_unicast_src vrrp_skip_check_adv_addr vrrp_strict "
        "vrrp_notify_priority_changes max_auto_priority min_auto_priority_delay vrrp_priority "
        "checker_priority bfd_priority vrrp_no_swap checker_no_swap bfd_no_swap "
        "vrrp_cpu_affinity checker_cpu_affinity bfd_cpu_affinity vrrp_rt_priority "
        "checker_rt_priority bfd_rt_priority vrrp_rlimit_rttime checker_rlimit_rttime "
        "bfd_rlimit_rttime snmp_socket enable_snmp_vrrp enable_snmp_keepalived "
        "enable_snmp_checker enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3 enable_traps "
        "enable_dbus dbus_service_name script_user enable_script_security notify_fifo "
        "notify_fifo_script vrrp_notify_fifo vrrp_notify_fifo_script lvs_notify_fifo "
        "lvs_notify_fifo_script fifo_write_vrrp_states_on_reload dynamic_interfaces "
        "vrrp_netlink_cmd_rcv_bufs vrrp_netlink_cmd_rcv_bufs_force "
        "vrrp_netlink_monitor_rcv_bufs vrrp_netlink_monitor_rcv_bufs_force "
        "lvs_netlink_cmd_rcv_bufs lvs_netlink_cmd_rcv_bufs_force lvs_netlink_monitor_rcv_bufs "
        "lvs_netlink_monitor_rcv_bufs_force process_monitor_rcv_bufs "
        "process_monitor_rcv_bufs_force vrrp_rx_bufs_policy vrrp_rx_bufs_multiplier "
        "rs_init_notifies no_checker_emails umask vrrp_startup_delay log_unknown_vrids "
        "vmac_prefix vmac_addr_prefix random_seed reload_check_config include_check "
        "reload_time_file reload_repeat reload_file data_use_instance"
    ),
    "notification_email": LINES,
}

_VRRP_SCRIPT = _simple("script interval timeout weight rise fall user init_fail")

_TRACKING_LISTS = _lists("track_interface track_script track_file track_process track_bfd")

_VRRP_SYNC_GROUP = {
    **_lists("group"),
    **_TRACKING_LISTS,
    **_simple(
        "notify_master notify_backup notify_fault notify_stop notify_deleted notify "
        "notify_priority_changes smtp_alert global_tracking sync_group_tracking_weight"
    ),
}

_VRRP_INSTANCE = {
    **_TRACKING_LISTS,
    **_lists(
        "unicast_peer virtual_ipaddress virtual_ipaddress_excluded virtual_routes virtual_rules"
    ),
    "authentication": "authentication",
    **_simple(
        "state interface vrf use_vmac use_vmac_addr vmac_xmit_base use_ipvlan native_ipv6 "
        "dont_track_primary mcast_src_ip unicast_src_ip mcast_dst_ip track_src_ip version "
        "check_unicast_src unicast_fault_no_peer unicast_ttl old_unicast_checksum "
        "garp_master_delay garp_master_repeat garp_lower_prio_delay garp_lower_prio_repeat "
        "garp_master_refresh garp_master_refresh_repeat garp_extra_if down_timer_adverts "
        "lower_prio_no_advert higher_prio_send_advert virtual_router_id priority advert_int "
        "promote_secondaries accept no_accept nopreempt preempt preempt_delay "
        "skip_check_adv_addr strict_mode debug notify_master notify_backup notify_fault "
        "notify_stop notify_deleted notify notify_master_rx_lower_pri notify_priority_changes "
        "smtp_alert kernel_rx_buf_size linkbeat_use_polling"
    ),
}

_CHECKER_COMMON = _simple(
    "connect_ip connect_port bindto bind_if bind_port fwmark alpha connect_timeout retry "
    "delay_before_retry warmup delay_loop log_all_failures"
)

_HTTP_GET = {
    **_CHECKER_COMMON,
    **_simple("http_protocol fast_recovery nb_get_retry virtualhost"),
    "url": "url",
}

_CHECKERS = {
    "HTTP_GET": "HTTP_GET",
    "SSL_GET": "SSL_GET",
    "TCP_CHECK": "TCP_CHECK",
    "SMTP_CHECK": "SMTP_CHECK",
    "DNS_CHECK": "DNS_CHECK",
    "MISC_CHECK": "MISC_CHECK",
    "BFD_CHECK": "BFD_CHECK",
    "PING_CHECK": "PING_CHECK",
    "UDP_CHECK": "UDP_CHECK",
    "FILE_CHECK": "FILE_CHECK",
}

_SERVER_COMMON = _simple(
    "smtp_alert virtualhost snmp_name alpha connect_timeout retry delay_before_retry warmup "
    "delay_loop inhibit_on_failure"
)

_VIRTUAL_SERVER = {
    **_SERVER_COMMON,
    **_simple(
        "lvs_sched lb_algo flag-1 flag-2 flag-3 sh-port sh-fallback mh-port mh-fallback ops "
        "lvs_method lb_kind persistence_engine persistence_timeout persistence_granularity "
        "protocol ha_suspend omega quorum hysteresis quorum_up quorum_down ip_family "
        "sorry_server sorry_server_inhibit sorry_server_lvs_method"
    ),
    "real_server": "real_server",
}

_REAL_SERVER = {
    **_SERVER_COMMON,
    **_simple("weight lvs_method notify_up notify_down uthreshold lthreshold"),
    **_CHECKERS,
}

SCHEMAS: dict[str, BlockSchema] = {
    schema.name: schema
    for schema in (
        BlockSchema("top level", _TOP),
        BlockSchema("global_defs", _GLOBAL_DEFS),
        BlockSchema("vrrp_script", _VRRP_SCRIPT),
        BlockSchema("vrrp_sync_group", _VRRP_SYNC_GROUP),
        BlockSchema("vrrp_instance", _VRRP_INSTANCE),
        BlockSchema("authentication", _simple("auth_type auth_pass")),
        BlockSchema("track_group", _lists("group")),
        BlockSchema("track_file", _simple("file weight init_file")),
        BlockSchema(
            "vrrp_track_process",
            _simple(
                "process param_match weight quorum quorum_max fork_delay terminate_delay delay "
                "full_command"
            ),
        ),
        BlockSchema(
            "bfd_instance",
            _simple(
                "neighbor_ip neighbour_ip source_ip min_rx min_tx idle_tx multiplier passive "
                "ttl hoplimit max_hops weight vrrp checker"
            ),
        ),
        BlockSchema(
            "garp_group",
            {**_simple("garp_interval gna_interval interface"), **_lists("interfaces")},
        ),
        BlockSchema("SSL", _simple("password ca certificate key")),
        BlockSchema("virtual_server", _VIRTUAL_SERVER),
        BlockSchema("real_server", _REAL_SERVER),
        BlockSchema("HTTP_GET", _HTTP_GET),
        BlockSchema("SSL_GET", {**_HTTP_GET, **_simple("enable_sni")}),
        BlockSchema("TCP_CHECK", _CHECKER_COMMON),
        BlockSchema("SMTP_CHECK", {**_CHECKER_COMMON, **_simple("helo_name")}),
        BlockSchema("DNS_CHECK", {**_CHECKER_COMMON, **_simple("type name")}),
        BlockSchema(
            "MISC_CHECK",
            _simple(
                "alpha retry delay_before_retry warmup delay_loop log_all_failures misc_path "
                "misc_timeout misc_dynamic user"
            ),
        ),
        BlockSchema("BFD_CHECK", _simple("name")),
        BlockSchema("PING_CHECK", _CHECKER_COMMON),
        BlockSchema(
            "UDP_CHECK",
            {
                **_CHECKER_COMMON,
                **_simple("payload require_reply min_reply_length max_reply_length"),
            },
        ),
        BlockSchema("FILE_CHECK", _simple("track_file dynamic weight")),
        BlockSchema(
            "url",
            _simple(
                "path digest status_code virtualhost regex regex_no_match regex_options "
                "regex_stack regex_min_offset regex_max_offset"
            ),
        ),
    )
}

TOP = "top level"

VIPKEEPER_EXTENSIONS: dict[str, frozenset[str]] = {
    "global_defs": frozenset({"lvs_backend", "lvs_hash_seed", "vrrp_peer_filter"}),
}
"""Keywords vipkeeper accepts that keepalived does not know, per block."""

ALIASES: dict[str, str] = {
    "lb_algo": "lvs_sched",
    "lb_kind": "lvs_method",
    "nb_get_retry": "retry",
    "vrrp_track_file": "track_file",
    "neighbour_ip": "neighbor_ip",
    "enable_snmp_keepalived": "enable_snmp_vrrp",
}
"""Older spellings keepalived still accepts, mapped to the current name."""


def _reasons(reason: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), reason)


UNSUPPORTED_REASONS: dict[str, str] = {
    **_reasons(
        "e-mail alerts are not supported",
        "smtp_alert smtp_alert_vrrp smtp_alert_checker notification_email "
        "notification_email_from smtp_server smtp_helo_name smtp_connect_timeout "
        "no_email_faults no_checker_emails",
    ),
    **_reasons(
        "SNMP is not supported",
        "snmp_socket enable_snmp_vrrp enable_snmp_keepalived enable_snmp_checker "
        "enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3 enable_traps snmp_name",
    ),
    **_reasons("D-Bus is not supported", "enable_dbus dbus_service_name"),
    **_reasons(
        "process scheduling and memory tuning are not supported",
        "vrrp_priority checker_priority bfd_priority vrrp_no_swap checker_no_swap bfd_no_swap "
        "vrrp_cpu_affinity checker_cpu_affinity bfd_cpu_affinity vrrp_rt_priority "
        "checker_rt_priority bfd_rt_priority vrrp_rlimit_rttime checker_rlimit_rttime "
        "bfd_rlimit_rttime max_auto_priority min_auto_priority_delay",
    ),
    **_reasons(
        "vipkeeper manages its own nftables table and does not use iptables or ipsets",
        "nftables nftables_priority nftables_counters nftables_ifindex nftables_ipvs "
        "nftables_ipvs_priority nftables_ipvs_start_fwmark vrrp_iptables vrrp_ipsets",
    ),
    **_reasons(
        "states are not written to the notify FIFOs again on reload",
        "fifo_write_vrrp_states_on_reload",
    ),
    **_reasons(
        "only the RFC virtual MAC 00-00-5E-00-01-{VRID} is supported (use_vmac)",
        "use_vmac_addr vmac_prefix vmac_addr_prefix",
    ),
    **_reasons("ipvlan interfaces are not supported", "use_ipvlan"),
    **_reasons(
        "vipkeeper manages virtual addresses only, not routes, rules or static addresses",
        "virtual_routes virtual_rules static_ipaddress static_routes static_rules track_group",
    ),
    **_reasons(
        "tracking files, processes and BFD sessions is not supported (use track_script)",
        "track_file vrrp_track_file track_process vrrp_track_process track_bfd bfd_instance",
    ),
    **_reasons(
        "TLS health checks are not supported (use HTTP_GET, TCP_CHECK or MISC_CHECK)", "SSL_GET SSL"
    ),
    **_reasons(
        "this health checker is not supported (use HTTP_GET, TCP_CHECK or MISC_CHECK)",
        "SMTP_CHECK DNS_CHECK UDP_CHECK PING_CHECK FILE_CHECK BFD_CHECK",
    ),
    **_reasons(
        "network namespaces are not supported (run vipkeeper inside the namespace)",
        "net_namespace net_namespace_ipvs namespace_with_ipsets",
    ),
    **_reasons(
        "virtual server groups are not supported (declare each virtual_server)",
        "virtual_server_group",
    ),
    **_reasons(
        "with unicast_peer configured, an advert from any other source is always dropped",
        "check_unicast_src vrrp_check_unicast_src",
    ),
    **_reasons(
        "configuration reload is not supported",
        "reload_check_config reload_time_file reload_repeat reload_file config_save_dir",
    ),
}


def unsupported_message(keyword: str) -> str:
    """The warning text for a keepalived keyword vipkeeper ignores."""
    reason = UNSUPPORTED_REASONS.get(keyword)
    if reason is None:
        return f"{keyword}: ignored, not supported"
    return f"{keyword}: {reason}, ignored"


def _shown(word: str) -> str:
    """A word from the file as the message shows it: bare when it is a plain word, quoted when
    it is empty or holds spaces (a stray quote can make a whole line one "keyword")."""
    if word and not any(c.isspace() for c in word):
        return word
    return repr(word)


def unknown_message(keyword: str, schema: BlockSchema, supported: Iterable[str]) -> str:
    """The error text for a keyword keepalived does not know in this block."""
    where = "at the top level" if schema.name == TOP else f"in {schema.name}"
    keyword = _shown(keyword)
    close = schema.suggestions(keyword)
    if close:
        options = " or ".join(repr(name) for name in close)
        return f"{keyword}: unknown keyword {where}; did you mean {options}?"
    listed = sorted(supported)
    if listed:
        return (
            f"{keyword}: unknown keyword {where}; vipkeeper uses: {', '.join(listed)}"
            " (see docs/configuration.md)"
        )
    return f"{keyword}: unknown keyword {where}"
