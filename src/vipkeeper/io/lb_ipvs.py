"""The IPVS load-balancer data plane: services and destinations over generic netlink.

Owns: turning vipkeeper.core.lb operations into IPVS generic-netlink messages (pure functions,
unit-tested without a kernel) and sending them with pyroute2's asyncio socket (`AsyncIPVS`).
Must never: decide what the kernel should hold (core.lb.diff does) or block the event loop -- the
synchronous `IPVS` wrapper runs its own loop and is not used.

Kernel facts (include/uapi/linux/ip_vs.h): forwarding methods MASQ (NAT) = 0, DROUTE (DR) = 3;
service flags PERSISTENT = 0x1, SCHED1 = 0x8 (sh/mh "fallback"), SCHED2 = 0x10 (sh/mh "port").
A full service entry needs scheduler, flags, timeout and netmask; a full destination needs
forwarding method, weight and both thresholds. The kernel accepts a destination only when the
network namespace classifies its address as unicast or local (ip_vs_new_dest, inet_addr_type):
a namespace without any IPv4 address, not even 127.0.0.1 on an up `lo`, has no local routing
table yet and classifies every address as broadcast, so each destination is refused with EINVAL
(ipvsadm: "Invalid operation. Possibly ... address not unicast"). For failover survival with
`mh`, set net.ipv4.vs.sloppy_tcp = 1 (`enable_sloppy_tcp`): the new Master then accepts
mid-stream TCP packets of connections it never saw, and mh sends them to the same real server.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyroute2.ipvs import AsyncIPVS
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import ipvs as genl_ipvs

from vipkeeper.core.lb import (
    AddDestination,
    AddService,
    ForwardingMethod,
    Operation,
    Protocol,
    RealServer,
    RemoveDestination,
    RemoveService,
    Scheduler,
    SchedulerFlag,
    UpdateDestination,
    UpdateService,
    VirtualServer,
    VirtualService,
    diff,
)
from vipkeeper.core.records import record

IP_VS_CONN_F_MASQ = 0
IP_VS_CONN_F_DROUTE = 3
IP_VS_SVC_F_PERSISTENT = 0x0001
IP_VS_SVC_F_SCHED1 = 0x0008
IP_VS_SVC_F_SCHED2 = 0x0010
_FLAG_MASK = 0xFFFFFFFF

FORWARDING_METHODS = {
    ForwardingMethod.NAT: IP_VS_CONN_F_MASQ,
    ForwardingMethod.DR: IP_VS_CONN_F_DROUTE,
}
SCHEDULER_FLAGS = {
    SchedulerFlag.FALLBACK: IP_VS_SVC_F_SCHED1,
    SchedulerFlag.PORT: IP_VS_SVC_F_SCHED2,
}
PROTOCOLS = {Protocol.TCP: socket.IPPROTO_TCP, Protocol.UDP: socket.IPPROTO_UDP}


@record
class IpvsRequest:
    """One generic-netlink request: the message and its netlink header flags."""

    message: genl_ipvs.ipvsmsg
    flags: int


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def service_flags(service: VirtualService) -> int:
    flags = IP_VS_SVC_F_PERSISTENT if service.persistence_timeout > 0 else 0
    if service.scheduler in (Scheduler.SOURCE_HASH, Scheduler.MAGLEV_HASH):
        for flag in service.scheduler_flags:
            flags |= SCHEDULER_FLAGS[flag]
    return flags


def _service_key_attrs(service: VirtualService) -> list[tuple[str, Any]]:
    if service.fwmark is not None:
        return [("IPVS_SVC_ATTR_AF", socket.AF_INET), ("IPVS_SVC_ATTR_FWMARK", service.fwmark)]
    assert service.address is not None and service.port is not None
    return [
        ("IPVS_SVC_ATTR_AF", _family(service.address)),
        ("IPVS_SVC_ATTR_PROTOCOL", PROTOCOLS[service.protocol]),
        ("IPVS_SVC_ATTR_ADDR", service.address),
        ("IPVS_SVC_ATTR_PORT", service.port),
    ]


def _netmask(service: VirtualService) -> str:
    # IPv4: a mask; IPv6: the kernel reads the 32-bit field as a prefix length in host order.
    if service.ip_version == 6:
        return socket.inet_ntoa(struct.pack("=I", 128))
    return "255.255.255.255"


def _service_attrs(service: VirtualService) -> list[tuple[str, Any]]:
    return [
        *_service_key_attrs(service),
        ("IPVS_SVC_ATTR_SCHED_NAME", service.scheduler.value),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": service_flags(service), "mask": _FLAG_MASK}),
        ("IPVS_SVC_ATTR_TIMEOUT", service.persistence_timeout),
        ("IPVS_SVC_ATTR_NETMASK", _netmask(service)),
    ]


def _dest_key_attrs(server: RealServer) -> list[tuple[str, Any]]:
    # ADDR_FAMILY first: pyroute2 picks the ADDR encoding from it
    return [
        ("IPVS_DEST_ATTR_ADDR_FAMILY", _family(server.address)),
        ("IPVS_DEST_ATTR_ADDR", server.address),
        ("IPVS_DEST_ATTR_PORT", server.port),
    ]


def _dest_attrs(server: RealServer, method: ForwardingMethod) -> list[tuple[str, Any]]:
    return [
        *_dest_key_attrs(server),
        ("IPVS_DEST_ATTR_FWD_METHOD", FORWARDING_METHODS[method]),
        ("IPVS_DEST_ATTR_WEIGHT", server.weight),
        ("IPVS_DEST_ATTR_U_THRESH", 0),
        ("IPVS_DEST_ATTR_L_THRESH", 0),
    ]


def _message(command: int, attrs: list[tuple[str, Any]]) -> IpvsRequest:
    message = genl_ipvs.ipvsmsg()
    message["cmd"] = command
    message["version"] = genl_ipvs.GENL_VERSION
    message["attrs"] = attrs
    return IpvsRequest(message=message, flags=NLM_F_REQUEST | NLM_F_ACK)


def build_request(operation: Operation) -> IpvsRequest:
    """The netlink request carrying out one core.lb operation."""
    match operation:
        case AddService(service=service):
            attrs = [("IPVS_CMD_ATTR_SERVICE", {"attrs": _service_attrs(service)})]
            return _message(genl_ipvs.IPVS_CMD_NEW_SERVICE, attrs)
        case UpdateService(new=service):
            attrs = [("IPVS_CMD_ATTR_SERVICE", {"attrs": _service_attrs(service)})]
            return _message(genl_ipvs.IPVS_CMD_SET_SERVICE, attrs)
        case RemoveService(service=service):
            attrs = [("IPVS_CMD_ATTR_SERVICE", {"attrs": _service_key_attrs(service)})]
            return _message(genl_ipvs.IPVS_CMD_DEL_SERVICE, attrs)
        case AddDestination(service=service, server=server, method=method):
            return _message(genl_ipvs.IPVS_CMD_NEW_DEST, _dest_request(service, server, method))
        case UpdateDestination(service=service, server=server, method=method):
            return _message(genl_ipvs.IPVS_CMD_SET_DEST, _dest_request(service, server, method))
        case RemoveDestination(service=service, server=server):
            attrs = [
                ("IPVS_CMD_ATTR_SERVICE", {"attrs": _service_key_attrs(service)}),
                ("IPVS_CMD_ATTR_DEST", {"attrs": _dest_key_attrs(server)}),
            ]
            return _message(genl_ipvs.IPVS_CMD_DEL_DEST, attrs)
    raise TypeError(f"not an IPVS operation: {operation!r}")


def _dest_request(
    service: VirtualService, server: RealServer, method: ForwardingMethod
) -> list[tuple[str, Any]]:
    return [
        ("IPVS_CMD_ATTR_SERVICE", {"attrs": _service_key_attrs(service)}),
        ("IPVS_CMD_ATTR_DEST", {"attrs": _dest_attrs(server, method)}),
    ]


def enable_sloppy_tcp(proc_sys: Path = Path("/proc/sys")) -> None:
    """net.ipv4.vs.sloppy_tcp = 1: accept mid-stream TCP after a failover (see module docstring)."""
    (proc_sys / "net/ipv4/vs/sloppy_tcp").write_text("1\n")


class IpvsError(RuntimeError):
    pass


class IpvsBackend:
    """LoadBalancerBackend on IPVS. Keeps the last applied state and sends only the diff.

    Adopting what an earlier run left behind: an add that finds the entry already there (EEXIST)
    is retried as a set, so a restart does not have to flush live connections.
    """

    name = "ipvs"

    def __init__(self, *, netns: str | None = None) -> None:
        self._netns = netns
        self._socket: AsyncIPVS | None = None
        self._current: tuple[VirtualServer, ...] = ()

    async def _ipvs(self) -> AsyncIPVS:
        if self._socket is None:
            sock = AsyncIPVS(netns=self._netns) if self._netns else AsyncIPVS()
            await sock.setup_endpoint()
            self._socket = sock
        return self._socket

    async def _send(self, request: IpvsRequest) -> None:
        sock = await self._ipvs()
        responses = await sock.nlm_request(
            request.message, msg_type=sock.prid, msg_flags=request.flags
        )
        async for _ in responses:
            pass

    async def execute(self, operations: Sequence[Operation]) -> None:
        for operation in operations:
            try:
                await self._send(build_request(operation))
            except NetlinkError as error:
                retry = _as_update(operation) if error.code == errno.EEXIST else None
                if retry is None:
                    raise IpvsError(_failure(operation, error)) from error
                await self._send(build_request(retry))

    async def apply(self, desired: Sequence[VirtualServer]) -> None:
        await self.execute(diff(self._current, desired))
        self._current = tuple(desired)

    async def clear(self) -> None:
        await self.execute(diff(self._current, ()))
        self._current = ()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _failure(operation: Operation, error: NetlinkError) -> str:
    message = f"{type(operation).__name__} failed: {error}"
    if error.code == errno.EINVAL and isinstance(operation, AddDestination | UpdateDestination):
        message += (
            f" (the kernel takes real server {operation.server.address} only if this network"
            " namespace routes it as unicast: a namespace without any IPv4 address, not even"
            " 127.0.0.1 on an up lo, routes every address as broadcast)"
        )
    return message


def _as_update(operation: Operation) -> Operation | None:
    if isinstance(operation, AddService):
        return UpdateService(old=operation.service, new=operation.service)
    if isinstance(operation, AddDestination):
        return UpdateDestination(
            service=operation.service, server=operation.server, method=operation.method
        )
    return None
