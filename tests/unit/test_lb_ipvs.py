"""IPVS data plane: the generic-netlink messages it builds, decoded back (no kernel needed)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import ipvs as genl

from vipkeeper.core.lb import (
    AddDestination,
    AddService,
    ForwardingMethod,
    Operation,
    RealServer,
    RemoveDestination,
    RemoveService,
    Scheduler,
    SchedulerFlag,
    UpdateDestination,
    UpdateService,
    VirtualServer,
    VirtualService,
)
from vipkeeper.io import lb_ipvs
from vipkeeper.io.lb_ipvs import IpvsBackend, build_request, enable_sloppy_tcp

WEB = VirtualService(address="172.16.9.1", port=80)
RS1 = RealServer(address="192.168.0.54", port=80, weight=3)


def wire(operation: Operation) -> genl.ipvsmsg:
    """Encode the request as the kernel would receive it, then parse it back."""
    request = build_request(operation)
    message = request.message
    message["header"]["type"] = 0x22
    message["header"]["flags"] = request.flags
    message.encode()
    decoded = genl.ipvsmsg(message.data)
    decoded.decode()
    assert decoded["header"]["flags"] == NLM_F_REQUEST | NLM_F_ACK
    return decoded


def attrs(message: genl.ipvsmsg, name: str) -> dict[str, Any]:
    nested = message.get_attr(name)
    assert nested is not None, f"{name} missing"
    return dict(nested["attrs"])


def test_add_service_carries_the_full_service_entry():
    mh = VirtualService(
        address="172.16.9.1",
        port=80,
        scheduler=Scheduler.MAGLEV_HASH,
        scheduler_flags=frozenset({SchedulerFlag.FALLBACK, SchedulerFlag.PORT}),
    )
    message = wire(AddService(service=mh))
    assert message["cmd"] == genl.IPVS_CMD_NEW_SERVICE
    service = attrs(message, "IPVS_CMD_ATTR_SERVICE")
    assert service["IPVS_SVC_ATTR_AF"] == socket.AF_INET
    assert service["IPVS_SVC_ATTR_PROTOCOL"] == socket.IPPROTO_TCP
    assert service["IPVS_SVC_ATTR_ADDR"] == "172.16.9.1"
    assert service["IPVS_SVC_ATTR_PORT"] == 80
    assert service["IPVS_SVC_ATTR_SCHED_NAME"] == "mh"
    assert service["IPVS_SVC_ATTR_FLAGS"]["flags"] == 0x08 | 0x10  # SCHED1 | SCHED2
    assert service["IPVS_SVC_ATTR_TIMEOUT"] == 0
    assert service["IPVS_SVC_ATTR_NETMASK"] == "255.255.255.255"


def test_persistence_sets_the_persistent_flag_and_timeout():
    sticky = VirtualService(address="172.16.9.1", port=443, persistence_timeout=300)
    service = attrs(wire(AddService(service=sticky)), "IPVS_CMD_ATTR_SERVICE")
    assert service["IPVS_SVC_ATTR_FLAGS"]["flags"] & 0x1
    assert service["IPVS_SVC_ATTR_TIMEOUT"] == 300


def test_scheduler_flags_are_ignored_for_schedulers_that_do_not_read_them():
    rr = VirtualService(
        address="172.16.9.1",
        port=80,
        scheduler=Scheduler.ROUND_ROBIN,
        scheduler_flags=frozenset({SchedulerFlag.PORT}),
    )
    service = attrs(wire(AddService(service=rr)), "IPVS_CMD_ATTR_SERVICE")
    assert service["IPVS_SVC_ATTR_SCHED_NAME"] == "rr"
    assert service["IPVS_SVC_ATTR_FLAGS"]["flags"] == 0


def test_fwmark_service_is_keyed_by_mark_only():
    service = attrs(wire(AddService(service=VirtualService(fwmark=7))), "IPVS_CMD_ATTR_SERVICE")
    assert service["IPVS_SVC_ATTR_FWMARK"] == 7
    assert "IPVS_SVC_ATTR_ADDR" not in service
    assert "IPVS_SVC_ATTR_PORT" not in service


def test_ipv6_service_uses_af_inet6_and_a_128_bit_prefix():
    v6 = VirtualService(address="2001:db8::1", port=80)
    service = attrs(wire(AddService(service=v6)), "IPVS_CMD_ATTR_SERVICE")
    assert service["IPVS_SVC_ATTR_AF"] == socket.AF_INET6
    assert service["IPVS_SVC_ATTR_ADDR"] == "2001:db8::1"


@pytest.mark.parametrize(("method", "code"), [(ForwardingMethod.DR, 3), (ForwardingMethod.NAT, 0)])
def test_add_destination_carries_method_weight_and_thresholds(method: ForwardingMethod, code: int):
    message = wire(AddDestination(service=WEB, server=RS1, method=method))
    assert message["cmd"] == genl.IPVS_CMD_NEW_DEST
    service = attrs(message, "IPVS_CMD_ATTR_SERVICE")
    assert set(service) == {
        "IPVS_SVC_ATTR_AF",
        "IPVS_SVC_ATTR_PROTOCOL",
        "IPVS_SVC_ATTR_ADDR",
        "IPVS_SVC_ATTR_PORT",
    }
    dest = attrs(message, "IPVS_CMD_ATTR_DEST")
    assert dest["IPVS_DEST_ATTR_ADDR"] == "192.168.0.54"
    assert dest["IPVS_DEST_ATTR_PORT"] == 80
    assert dest["IPVS_DEST_ATTR_FWD_METHOD"] == code
    assert dest["IPVS_DEST_ATTR_WEIGHT"] == 3
    assert dest["IPVS_DEST_ATTR_U_THRESH"] == 0
    assert dest["IPVS_DEST_ATTR_L_THRESH"] == 0


def test_update_and_remove_use_the_matching_commands():
    inhibited = RealServer(address="192.168.0.54", port=80, weight=0)
    update = wire(UpdateDestination(service=WEB, server=inhibited, method=ForwardingMethod.DR))
    assert update["cmd"] == genl.IPVS_CMD_SET_DEST
    assert attrs(update, "IPVS_CMD_ATTR_DEST")["IPVS_DEST_ATTR_WEIGHT"] == 0
    remove = wire(RemoveDestination(service=WEB, server=RS1))
    assert remove["cmd"] == genl.IPVS_CMD_DEL_DEST
    assert "IPVS_DEST_ATTR_WEIGHT" not in attrs(remove, "IPVS_CMD_ATTR_DEST")
    # pyroute2's own "update" command maps to DEL_SERVICE; ours must be SET_SERVICE
    assert wire(UpdateService(old=WEB, new=WEB))["cmd"] == genl.IPVS_CMD_SET_SERVICE
    assert wire(RemoveService(service=WEB))["cmd"] == genl.IPVS_CMD_DEL_SERVICE


class FakeSocket:
    prid = 0x22

    def __init__(self, fail_first_with: int | None = None, *, fail_cmd: int | None = None) -> None:
        self.sent: list[int] = []
        self.fail_first_with = fail_first_with
        self.fail_cmd = fail_cmd  # fail the first request with this command (default: any)

    async def nlm_request(self, msg: genl.ipvsmsg, msg_type: int, msg_flags: int) -> Any:
        self.sent.append(msg["cmd"])
        if self.fail_first_with is not None and self.fail_cmd in (None, msg["cmd"]):
            code, self.fail_first_with = self.fail_first_with, None
            raise NetlinkError(code)

        async def responses() -> Any:
            for item in ():
                yield item

        return responses()


async def test_backend_sends_the_diff_in_order_and_remembers_state(monkeypatch: pytest.MonkeyPatch):
    fake = FakeSocket()
    backend = IpvsBackend()
    monkeypatch.setattr(backend, "_socket", fake)
    state = [VirtualServer(service=WEB, real_servers=(RS1,))]
    await backend.apply(state)
    await backend.apply(state)
    assert fake.sent == [genl.IPVS_CMD_NEW_SERVICE, genl.IPVS_CMD_NEW_DEST]
    await backend.clear()
    assert fake.sent[-1] == genl.IPVS_CMD_DEL_SERVICE


async def test_backend_adopts_an_existing_service_after_a_restart(monkeypatch: pytest.MonkeyPatch):
    fake = FakeSocket(fail_first_with=errno.EEXIST)
    backend = IpvsBackend()
    monkeypatch.setattr(backend, "_socket", fake)
    await backend.apply([VirtualServer(service=WEB, real_servers=(RS1,))])
    assert fake.sent == [
        genl.IPVS_CMD_NEW_SERVICE,
        genl.IPVS_CMD_SET_SERVICE,
        genl.IPVS_CMD_NEW_DEST,
    ]


async def test_backend_reports_other_netlink_errors(monkeypatch: pytest.MonkeyPatch):
    backend = IpvsBackend()
    monkeypatch.setattr(backend, "_socket", FakeSocket(fail_first_with=errno.EINVAL))
    with pytest.raises(lb_ipvs.IpvsError, match="AddService"):
        await backend.apply([VirtualServer(service=WEB, real_servers=(RS1,))])


async def test_a_refused_destination_names_the_address_and_the_namespace_cause(
    monkeypatch: pytest.MonkeyPatch,
):
    backend = IpvsBackend()
    fake = FakeSocket(fail_first_with=errno.EINVAL, fail_cmd=genl.IPVS_CMD_NEW_DEST)
    monkeypatch.setattr(backend, "_socket", fake)
    with pytest.raises(lb_ipvs.IpvsError, match="AddDestination failed") as raised:
        await backend.apply([VirtualServer(service=WEB, real_servers=(RS1,))])
    assert f"real server {RS1.address}" in str(raised.value)
    assert "without any IPv4 address" in str(raised.value)
    assert fake.sent == [genl.IPVS_CMD_NEW_SERVICE, genl.IPVS_CMD_NEW_DEST]


def test_enable_sloppy_tcp_writes_the_sysctl(tmp_path: Path):
    (tmp_path / "net/ipv4/vs").mkdir(parents=True)
    enable_sloppy_tcp(tmp_path)
    assert (tmp_path / "net/ipv4/vs/sloppy_tcp").read_text().strip() == "1"
