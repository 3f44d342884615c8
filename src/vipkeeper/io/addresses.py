"""Virtual addresses on interfaces, over rtnetlink with pyroute2's asyncio API.

Owns: adding and removing the VIPs the core orders (`AddVips` / `DelVips`), idempotently;
cleaning VIPs a crashed run left behind; listing an interface's addresses and picking the primary
one VRRP sends from (first non-secondary IPv4 address; first usable IPv6 link-local, which
RFC 9568 §5.1.2.1 requires as the IPv6 source).

Must never: decide which addresses should be present (the core does), shell out to `ip`, or use
pyroute2's synchronous classes (they run their own event loop).

Adding a VIP is on a takeover's path, before the gratuitous ARP. pyroute2's request machinery
spends about 0.7 ms on it (a loop iteration for the answer, and parsing); the kernel needs a few
microseconds. So once the interface's index is known, `add` encodes the RTM_NEWADDR with
pyroute2's own `ifaddrmsg`, exactly as `AsyncIPRoute.addr("add")` does, sends it on a second
rtnetlink socket of the manager's, and reads the acknowledgement that rtnetlink queued while
handling the send (awaiting it through the loop in the unlikely case it is not there yet).
Everything else (dumps, deletes, index look-ups) goes through `AsyncIPRoute`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from vipkeeper.core.effects import VirtualAddress

log = logging.getLogger(__name__)

# linux/if_addr.h
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

# /etc/iproute2/rt_scopes; pyroute2 wants the numbers.
SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
_SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}


class InterfaceNotFoundError(LookupError):
    """The named interface does not exist (in this network namespace)."""


@dataclass(frozen=True, kw_only=True)
class InterfaceAddress:
    """One address as the kernel reports it."""

    interface: str
    address: str
    prefixlen: int
    family: int  # socket.AF_INET or socket.AF_INET6
    scope: str  # "global", "link", "host", ... or the number as text
    label: str | None
    flags: int  # IFA_F_* bits

    @property
    def secondary(self) -> bool:
        return bool(self.flags & IFA_F_SECONDARY)

    @property
    def tentative(self) -> bool:
        return bool(self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))


class AddressManager:
    """Owns one rtnetlink socket; use as `async with AddressManager() as addresses: ...`."""

    def __init__(self) -> None:
        self._ipr: Any = AsyncIPRoute()
        # One request at a time: pyroute2 answers a second dump on the same socket with EBUSY.
        self._lock = asyncio.Lock()
        self._indices: dict[str, int] = {}
        self._quick: socket.socket | None = None  # see the module docstring
        self._sequence = 0

    async def __aenter__(self) -> AddressManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()
        if self._quick is not None:
            self._quick.close()
            self._quick = None

    async def ifindex(self, interface: str) -> int:
        """The interface's index, cached: a link dump per address change is what made a
        director with hundreds of VIPs spend its time in netlink."""
        cached = self._indices.get(interface)
        if cached is not None:
            return cached
        indices = await self._ipr.link_lookup(ifname=interface)
        if not indices:
            raise InterfaceNotFoundError(f"no interface named {interface!r}")
        self._indices[interface] = int(indices[0])
        return self._indices[interface]

    def forget(self, interface: str) -> None:
        """Drop the cached index (the interface was deleted, or created again)."""
        self._indices.pop(interface, None)

    async def add(self, address: VirtualAddress) -> None:
        """Put `address` on its interface; already being there is not an error."""
        await self.add_if_missing(address)

    async def delete(self, address: VirtualAddress) -> None:
        """Take `address` off its interface; not being there (or no interface) is not an error."""
        await self.delete_if_present(address)

    async def add_if_missing(self, vip: VirtualAddress) -> bool:
        """Put `vip` on its interface; False when it was already there."""
        async with self._lock:
            return await self._retrying_stale_index(self._add, vip)

    async def delete_if_present(self, vip: VirtualAddress) -> bool:
        """Take `vip` off its interface; False when it was not there."""
        async with self._lock:
            return await self._retrying_stale_index(self._delete, vip)

    async def _retrying_stale_index(
        self, operation: Callable[[VirtualAddress], Awaitable[bool]], vip: VirtualAddress
    ) -> bool:
        try:
            return await operation(vip)
        except NetlinkError as error:
            if error.code not in (errno.ENODEV, errno.EINVAL) or vip.dev not in self._indices:
                raise
        # The cached index may belong to an interface that was deleted and created again.
        self.forget(vip.dev)
        return await operation(vip)

    async def _add(self, vip: VirtualAddress) -> bool:
        index = self._indices.get(vip.dev)
        if index is not None:
            return await self._add_quickly(vip, index)
        request = await self._request(vip)
        if request["family"] == socket.AF_INET:
            if vip.label is not None:
                request["label"] = vip.label
        else:
            # A VIP must answer at once after a takeover, not after duplicate detection.
            request["flags"] = IFA_F_NODAD
        try:
            await self._ipr.addr("add", **request)
        except NetlinkError as error:
            if error.code == errno.EEXIST:
                return False
            raise
        log.info("added %s/%d on %s", vip.address, vip.prefixlen, vip.dev)
        return True

    def add_now(self, vip: VirtualAddress) -> bool | None:
        """Put `vip` on its interface without waiting, for a takeover's first effects.

        True: added; False: it was already there; None: this cannot be done without waiting
        (the interface's index is not known yet, another request is in flight, or rtnetlink
        did not answer within the send), so use `add`, which is idempotent. Other netlink
        errors are raised as `NetlinkError`, as `add` raises them.
        """
        index = self._indices.get(vip.dev)
        if index is None or self._lock.locked():
            return None
        error = self._answer(self._send_new_address(vip, index))
        if error is None or error in (errno.ENODEV, errno.EINVAL):
            return None  # no answer yet, or perhaps a stale index: `add` looks it up again
        return self._added(vip, error)

    async def _add_quickly(self, vip: VirtualAddress, index: int) -> bool:
        """RTM_NEWADDR on the manager's second rtnetlink socket (see the module docstring);
        the same message `_add` sends through pyroute2. False when it was already there."""
        sequence = self._send_new_address(vip, index)
        while (error := self._answer(sequence)) is None:
            await _readable(self._quick_socket())
        return self._added(vip, error)

    def _answer(self, sequence: int) -> int | None:
        """The errno rtnetlink answered request `sequence` with (0: done), if it has answered;
        earlier answers still waiting in the socket are read and dropped."""
        sock = self._quick_socket()
        while True:
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                return None
            error = _acknowledgement(answer, sequence)
            if error is not None:
                return error

    def _added(self, vip: VirtualAddress, error: int) -> bool:
        if error == 0:
            asyncio.get_running_loop().call_soon(
                log.info, "added %s/%d on %s", vip.address, vip.prefixlen, vip.dev
            )
            return True
        if error == errno.EEXIST:
            return False
        raise NetlinkError(error, os.strerror(error))

    def _send_new_address(self, vip: VirtualAddress, index: int) -> int:
        """Send RTM_NEWADDR for `vip` on the quick socket; its sequence number."""
        address = ipaddress.ip_address(vip.address)
        message = ifaddrmsg()
        message["prefixlen"] = vip.prefixlen
        message["flags"] = 0
        message["scope"] = scope_number(vip.scope) if vip.scope is not None else 0
        message["index"] = index
        if address.version == 4:
            message["family"] = socket.AF_INET
            attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", str(address))]
            if vip.label is not None:
                attrs.append(("IFA_LABEL", vip.label))
            attrs.append(("IFA_LOCAL", str(address)))
        else:
            message["family"] = socket.AF_INET6
            attrs = [("IFA_ADDRESS", str(address)), ("IFA_FLAGS", IFA_F_NODAD)]
        message["attrs"] = attrs
        self._sequence = sequence = (self._sequence % 0x7FFFFFFF) + 1
        message["header"]["type"] = RTM_NEWADDR
        message["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
        message["header"]["sequence_number"] = sequence
        message.encode()
        self._quick_socket().send(bytes(message.data))
        return sequence

    def _quick_socket(self) -> socket.socket:
        if self._quick is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.setblocking(False)
            sock.bind((0, 0))
            self._quick = sock
        return self._quick

    async def _delete(self, vip: VirtualAddress) -> bool:
        try:
            request = await self._request(vip)
        except InterfaceNotFoundError:
            return False  # the interface went away, and the address with it
        request.pop("scope", None)  # the kernel matches on address and prefix length
        try:
            await self._ipr.addr("del", **request)
        except NetlinkError as error:
            if error.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                return False
            raise
        log.info("removed %s/%d from %s", vip.address, vip.prefixlen, vip.dev)
        return True

    async def add_all(self, vips: Iterable[VirtualAddress]) -> list[VirtualAddress]:
        """Add each address; returns the ones that were not present before."""
        return [vip for vip in vips if await self.add_if_missing(vip)]

    async def delete_all(self, vips: Iterable[VirtualAddress]) -> list[VirtualAddress]:
        """Delete each address; returns the ones that were present."""
        return [vip for vip in vips if await self.delete_if_present(vip)]

    async def remove_stale(self, vips: Iterable[VirtualAddress]) -> list[VirtualAddress]:
        """At startup: remove configured VIPs that a previous (crashed) run left on interfaces.

        Nothing of ours should be present before the first transition to Master. Returns the
        addresses that were found and removed.
        """
        removed = await self.delete_all(vips)
        for vip in removed:
            log.warning("removed stale VIP %s/%d from %s", vip.address, vip.prefixlen, vip.dev)
        return removed

    async def present(self, devices: Iterable[str]) -> frozenset[tuple[str, str]]:
        """(address, device) of every address on `devices`; a missing device holds nothing."""
        present: set[tuple[str, str]] = set()
        for device in sorted(devices):
            try:
                found = await self.list_addresses(device)
            except Exception:  # a missing interface holds nothing
                continue
            present.update((str(ipaddress.ip_address(a.address)), device) for a in found)
        return frozenset(present)

    async def list_addresses(
        self, interface: str, family: int = socket.AF_UNSPEC
    ) -> list[InterfaceAddress]:
        """The interface's addresses in kernel order (for IPv4: primary before secondaries)."""
        async with self._lock:
            try:
                return await self._list(interface, family)
            except InterfaceNotFoundError:
                raise
            except NetlinkError:
                self.forget(interface)
                return await self._list(interface, family)

    async def _list(self, interface: str, family: int) -> list[InterfaceAddress]:
        index = await self.ifindex(interface)
        result = []
        async for message in await self._ipr.addr("dump", family=family, index=index):
            if message["index"] != index:
                continue
            scope = message["scope"]
            result.append(
                InterfaceAddress(
                    interface=interface,
                    address=message.get_attr("IFA_ADDRESS"),
                    prefixlen=message["prefixlen"],
                    family=message["family"],
                    scope=_SCOPE_NAMES.get(scope, str(scope)),
                    label=message.get_attr("IFA_LABEL"),
                    flags=(message.get_attr("IFA_FLAGS") or 0) | message["flags"],
                )
            )
        return result

    async def has(self, vip: VirtualAddress) -> bool:
        wanted = ipaddress.ip_address(vip.address)
        try:
            present = await self.list_addresses(vip.dev)
        except InterfaceNotFoundError:
            return False
        return any(
            ipaddress.ip_address(item.address) == wanted and item.prefixlen == vip.prefixlen
            for item in present
        )

    async def primary_address(self, interface: str, family: int = socket.AF_INET) -> str | None:
        """The address VRRP sends from on `interface`, or None when it has none yet.

        IPv4: the first address that is not secondary. IPv6: the first link-local address that
        finished duplicate address detection.
        """
        for item in await self.list_addresses(interface, family):
            if family == socket.AF_INET and not item.secondary:
                return item.address
            if (
                family == socket.AF_INET6
                and ipaddress.IPv6Address(item.address).is_link_local
                and not item.tentative
            ):
                return item.address
        return None

    async def _request(self, vip: VirtualAddress) -> dict[str, Any]:
        address = ipaddress.ip_address(vip.address)
        request: dict[str, Any] = {
            "index": await self.ifindex(vip.dev),
            "address": str(address),
            "prefixlen": vip.prefixlen,
            "family": socket.AF_INET if address.version == 4 else socket.AF_INET6,
        }
        if vip.scope is not None:
            request["scope"] = scope_number(vip.scope)
        return request


async def _readable(sock: socket.socket) -> None:
    """Wait until `sock` has something to read."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _acknowledgement(answer: bytes, sequence: int) -> int | None:
    """The errno (0: success) a netlink NLMSG_ERROR answer to request `sequence` carries; None
    if `answer` holds no answer to it."""
    offset = 0
    while offset + 20 <= len(answer):
        length, kind, _flags, number, _port = struct.unpack_from("=IHHII", answer, offset)
        if length < 16:
            return None
        if kind == NLMSG_ERROR and number == sequence:
            (error,) = struct.unpack_from("=i", answer, offset + 16)
            return -int(error)
        offset += (length + 3) & ~3
    return None


def scope_number(scope: str) -> int:
    """rt_scopes name (or number as text) to the number netlink carries."""
    if scope in SCOPES:
        return SCOPES[scope]
    try:
        number = int(scope)
    except ValueError:
        raise ValueError(
            f"unknown address scope {scope!r}; valid: {', '.join(SCOPES)} or 0-255"
        ) from None
    if not 0 <= number <= 255:
        raise ValueError(f"address scope {number} out of range 0-255")
    return number
