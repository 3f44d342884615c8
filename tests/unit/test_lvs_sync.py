"""lvs_sync_daemon: the keyword, its netlink messages (decoded back), the state it follows."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import ipvs as genl

from vipkeeper.config.load import parse_text
from vipkeeper.config.model import LvsSyncDaemon
from vipkeeper.io import lvs_sync
from vipkeeper.io.lvs_sync import (
    IP_VS_STATE_BACKUP,
    IP_VS_STATE_MASTER,
    SyncDaemonMessage,
    SyncDaemons,
    start_message,
    stop_message,
)

INSTANCE = """
vrrp_instance VI_LB {
    interface fe0
    virtual_router_id 61
    priority 100
    virtual_ipaddress {
        172.16.9.1
    }
}
"""


def config(line: str) -> Any:
    return parse_text("global_defs {\n    " + line + "\n}\n" + INSTANCE)


def test_keyword_with_every_option() -> None:
    result = config("lvs_sync_daemon srv0 VI_LB id 7 maxlen 1400 port 8849 ttl 2 group 224.0.0.82")
    assert result.config is not None, result.diagnostics
    assert result.diagnostics == []
    sync = result.config.global_defs.lvs_sync_daemon
    assert (sync.interface, sync.instance, sync.sync_id, sync.maxlen) == ("srv0", "VI_LB", 7, 1400)
    assert (sync.port, sync.ttl, sync.group) == (8849, 2, "224.0.0.82")


def test_keyword_with_defaults() -> None:
    result = config("lvs_sync_daemon srv0 VI_LB")
    assert result.config is not None
    sync = result.config.global_defs.lvs_sync_daemon
    assert sync == LvsSyncDaemon(interface="srv0", instance="VI_LB", location=sync.location)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("lvs_sync_daemon srv0 VI_NONE", "no vrrp_instance named VI_NONE"),
        ("lvs_sync_daemon srv0 VI_LB id 256", "out of range"),
        ("lvs_sync_daemon srv0 VI_LB colour 3", "expected lvs_sync_daemon INTERFACE"),
        ("lvs_sync_daemon srv0 VI_LB port", "expected lvs_sync_daemon INTERFACE"),
        ("lvs_sync_daemon srv0 VI_LB group 224.0.0", "not a valid"),
        ("lvs_sync_daemon srv0", "too few"),
    ],
)
def test_bad_keyword_is_refused_with_its_location(line: str, needle: str) -> None:
    result = config(line)
    assert result.config is None
    errors = [d for d in result.diagnostics if needle in d.message]
    assert errors and errors[0].line == 2, result.diagnostics


def decoded(message: SyncDaemonMessage) -> tuple[int, dict[str, Any]]:
    message.encode()
    back = SyncDaemonMessage(message.data)
    back.decode()
    daemon = back.get_attr("IPVS_CMD_ATTR_DAEMON")
    return back["cmd"], dict(daemon["attrs"])


def test_start_message_carries_every_configured_setting() -> None:
    settings = LvsSyncDaemon(
        interface="srv0", instance="VI_LB", sync_id=7, maxlen=1400, port=8849, ttl=2,
        group="224.0.0.82",
    )  # fmt: skip
    command, attrs = decoded(start_message(settings, IP_VS_STATE_MASTER))
    assert command == genl.IPVS_CMD_NEW_DAEMON
    assert attrs == {
        "IPVS_DAEMON_ATTR_STATE": 1,
        "IPVS_DAEMON_ATTR_MCAST_IFN": "srv0",
        "IPVS_DAEMON_ATTR_SYNC_ID": 7,
        "IPVS_DAEMON_ATTR_SYNC_MAXLEN": 1400,
        "IPVS_DAEMON_ATTR_MCAST_GROUP": "224.0.0.82",
        "IPVS_DAEMON_ATTR_MCAST_PORT": 8849,
        "IPVS_DAEMON_ATTR_MCAST_TTL": 2,
    }


def test_start_message_leaves_unset_options_to_the_kernel() -> None:
    settings = LvsSyncDaemon(interface="srv0", instance="VI_LB")
    _command, attrs = decoded(start_message(settings, IP_VS_STATE_BACKUP))
    assert attrs == {
        "IPVS_DAEMON_ATTR_STATE": 2,
        "IPVS_DAEMON_ATTR_MCAST_IFN": "srv0",
        "IPVS_DAEMON_ATTR_SYNC_ID": 0,
    }


def test_ipv6_group_uses_the_ipv6_attribute() -> None:
    settings = LvsSyncDaemon(interface="srv0", instance="VI_LB", group="ff02::81")
    _command, attrs = decoded(start_message(settings, IP_VS_STATE_MASTER))
    assert attrs["IPVS_DAEMON_ATTR_MCAST_GROUP6"] == "ff02::81"


def test_stop_message_names_only_the_state() -> None:
    command, attrs = decoded(stop_message(IP_VS_STATE_BACKUP))
    assert command == genl.IPVS_CMD_DEL_DAEMON
    assert attrs == {"IPVS_DAEMON_ATTR_STATE": 2}


class Recorder(SyncDaemons):
    """SyncDaemons whose messages are recorded instead of sent."""

    def __init__(self, fail_with: int | None = None) -> None:
        super().__init__(LvsSyncDaemon(interface="srv0", instance="VI_LB"))
        self.sent: list[tuple[int, int]] = []
        self.fail_with = fail_with

    async def _send(self, message: SyncDaemonMessage) -> None:
        command, attrs = decoded(message)
        self.sent.append((command, attrs["IPVS_DAEMON_ATTR_STATE"]))
        if self.fail_with is not None:
            raise NetlinkError(self.fail_with)


START, STOP = genl.IPVS_CMD_NEW_DAEMON, genl.IPVS_CMD_DEL_DAEMON


async def test_daemon_moves_with_the_vrrp_state_as_keepalived_does() -> None:
    daemons = Recorder()
    await daemons.follow("BACKUP")
    await daemons.follow("MASTER")
    await daemons.follow("MASTER")  # no change, nothing sent
    await daemons.follow("FAULT")
    await daemons.stop()
    assert daemons.sent == [
        (START, IP_VS_STATE_BACKUP),
        (STOP, IP_VS_STATE_BACKUP),
        (START, IP_VS_STATE_MASTER),
        (STOP, IP_VS_STATE_MASTER),
        (START, IP_VS_STATE_BACKUP),
        (STOP, IP_VS_STATE_BACKUP),
    ]
    assert daemons.running == set()


async def test_a_thread_already_running_is_adopted() -> None:
    daemons = Recorder(fail_with=errno.EEXIST)
    await daemons.follow("MASTER")
    assert daemons.running == {IP_VS_STATE_MASTER}


async def test_other_kernel_errors_are_raised() -> None:
    daemons = Recorder(fail_with=errno.ENODEV)
    with pytest.raises(NetlinkError):
        await daemons.follow("BACKUP")
    assert daemons.running == set()


def test_module_states_match_the_kernel_header() -> None:
    assert (lvs_sync.IP_VS_STATE_MASTER, lvs_sync.IP_VS_STATE_BACKUP) == (1, 2)
