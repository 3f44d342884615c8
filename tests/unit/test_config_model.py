"""The typed model built from a complete configuration: values converted, defaults resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from vipkeeper.config import load_config
from vipkeeper.config.lvs_model import HttpGetCheck, MiscCheck, TcpCheck
from vipkeeper.config.model import (
    Config,
    LvsBackend,
    LvsMethod,
    LvsScheduler,
    Protocol,
    VrrpState,
)
from vipkeeper.testing.samples import parsed

DATA = Path(__file__).parent / "data" / "config"


@pytest.fixture(scope="module")
def director() -> Config:
    result = load_config(str(DATA / "director.conf"))
    assert result.diagnostics == []
    assert result.config is not None
    return result.config


def test_global_defs_keep_values_and_vipkeeper_extensions(director: Config) -> None:
    defs = director.global_defs
    assert defs.router_id == "dir1"
    assert defs.vrrp_version == 3
    assert defs.vrrp_garp_master_delay == 2
    assert defs.vrrp_garp_master_repeat == 5  # keepalived default
    assert defs.enable_script_security is True
    assert (defs.script_user, defs.script_group) == ("nobody", "nogroup")
    assert defs.lvs_backend is LvsBackend.NFTABLES
    assert defs.lvs_hash_seed == 12345
    assert defs.location is not None and defs.location.line == 2


def test_vrrp_script_command_is_split_like_a_shell_line(director: Config) -> None:
    script = director.vrrp_script("check_httpd")
    assert script is not None
    assert script.command.argv == ("/usr/bin/curl", "-fs", "http://127.0.0.1/health check")
    assert (script.interval, script.timeout, script.weight, script.fall, script.rise) == (
        2.0,
        1.0,
        -20,
        3,
        2,
    )


def test_vrrp_instance_values_and_resolved_defaults(director: Config) -> None:
    web = director.vrrp_instance("VI_WEB")
    assert web is not None
    assert web.state is VrrpState.MASTER
    assert (web.interface, web.virtual_router_id, web.priority) == ("eth1", 51, 150)
    assert web.version == 3  # from global vrrp_version
    assert web.advert_int == 0.5
    assert web.garp_master_delay == 2  # from global_defs
    assert web.garp_master_refresh == 60
    assert [vip.cidr for vip in web.virtual_ipaddresses] == ["172.16.9.1/16", "172.16.9.2/32"]
    first = web.virtual_ipaddresses[0]
    assert (first.device, first.label) == ("eth1", "eth1:vip")
    assert first.location.line == 29 and first.location.column == 9
    assert [(t.name, t.weight) for t in web.track_interfaces] == [("eth0", -10)]
    assert [(t.name, t.weight) for t in web.track_scripts] == [("check_httpd", None)]
    assert web.unicast_src_ip == "192.168.0.53"
    assert [peer.address for peer in web.unicast_peers] == ["192.168.0.57"]
    assert web.notify_master is not None
    assert web.notify_master.argv == ("/etc/vipkeeper/notify.sh", "MASTER", "VI_WEB")
    assert web.notify_master.user == "root"
    assert web.notify is not None and web.notify.argv == ("/etc/vipkeeper/any.sh",)
    assert web.mcast_group == "224.0.0.18"


def test_included_file_objects_keep_their_own_file_and_line(director: Config) -> None:
    database = director.vrrp_instance("VI_DB")
    assert database is not None
    assert database.location.file.endswith("conf.d/backup.conf")
    assert database.location.line == 1
    assert database.family == 6 and database.version == 3
    assert database.preempt is False
    assert database.mcast_group == "ff02::12"
    group = director.sync_group_of("VI_DB")
    assert group is not None and group.instances == ("VI_WEB", "VI_DB")
    assert group.notify_fault is not None
    assert group.notify_fault.argv == ("/etc/vipkeeper/fault.sh", "two words")
    assert any(name.endswith("backup.conf") for name in director.files)


def test_virtual_server_settings_flow_down_to_checkers(director: Config) -> None:
    (server,) = director.virtual_servers
    assert (server.address, server.port, server.protocol) == ("172.16.9.1", 80, Protocol.TCP)
    assert server.scheduler is LvsScheduler.MH
    assert server.method is LvsMethod.DR
    assert server.delay_loop == 5.0
    first, second = server.real_servers
    assert (first.address, first.port, first.weight) == ("192.168.0.54", 80, 2)
    (http,) = first.checkers
    assert isinstance(http, HttpGetCheck)
    assert http.retry == 4  # nb_get_retry is keepalived's old name for retry
    assert http.connect_timeout == 2.0  # from the virtual server
    assert http.delay_loop == 5.0
    assert http.urls[0].path == "/health"
    assert http.urls[0].status_codes == ((200, 299), (301, 301))
    assert second.inhibit_on_failure is True and second.weight == 1
    tcp, misc = second.checkers
    assert isinstance(tcp, TcpCheck) and isinstance(misc, MiscCheck)
    assert (tcp.connect_port, tcp.connect_timeout) == (8080, 3.0)
    assert misc.command.argv == ("/usr/local/bin/probe", "--fast")
    assert (misc.misc_timeout, misc.misc_dynamic, misc.retry) == (4.0, True, 0)


def test_minimal_instance_gets_keepalived_defaults() -> None:
    config = parsed(
        "vrrp_instance V { interface eth0\n virtual_router_id 7\n"
        " virtual_ipaddress { 10.0.0.1 } }\n"
    )
    (instance,) = config.vrrp_instances
    assert instance.state is VrrpState.BACKUP
    assert (instance.priority, instance.advert_int, instance.version) == (100, 1.0, 2)
    assert instance.preempt is True
    assert (instance.garp_master_delay, instance.garp_master_repeat) == (5, 5)


def test_http_url_without_status_code_accepts_2xx_and_inherits_virtualhost() -> None:
    config = parsed(
        "virtual_server 10.0.0.1 80 {\n virtualhost www.example.org\n"
        " real_server 10.0.1.1 80 { HTTP_GET { url { path / } } } }\n"
    )
    (check,) = config.virtual_servers[0].real_servers[0].checkers
    assert isinstance(check, HttpGetCheck)
    assert check.urls[0].status_codes == ((200, 299),)
    assert check.urls[0].virtualhost == "www.example.org"
    assert check.delay_before_retry == 3.0 and check.retry == 1


def test_fwmark_virtual_server_has_no_address_or_port() -> None:
    config = parsed(
        "virtual_server fwmark 7 { lvs_sched sh\n real_server 10.0.1.1 { weight 3 } }\n"
    )
    (server,) = config.virtual_servers
    assert (server.address, server.port, server.fwmark, server.key) == (None, None, 7, "fwmark 7")
    assert server.real_servers[0].port is None
