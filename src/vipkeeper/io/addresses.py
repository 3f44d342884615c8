"""Virtual addresses on interfaces, over rtnetlink (`vipkeeper.io.rtnl`).

Owns: adding and removing the VIPs the core orders (`AddVips` / `DelVips`), idempotently;
cleaning VIPs a crashed run left behind; listing an interface's addresses and picking the primary
one VRRP sends from (first non-secondary IPv4 address; first usable IPv6 link-local, which
RFC 9568 §5.1.2.1 requires as the IPv6 source).

Must never: decide which addresses should be present (the core does), or shell out to `ip`.

Adding a VIP is on a takeover's path, before the gratuitous ARP; the kernel needs a few
microseconds for it. So once the interface's index is known, `add_now` sends the RTM_NEWADDR and
reads the acknowledgement that rtnetlink queued while handling the send, without a loop
iteration (`add` awaits it through the loop in the unlikely case it is not there yet). One
request at a time is in flight: the manager's lock orders them.

`remove_stale_now` removes the VIPs a killed run left behind before the event loop exists (the
daemon's start, `vipkeeper.launch`): this module loads without asyncio, which the manager
imports when it is made, inside the daemon.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

from vipkeeper.core.records import record
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.io import rtnl
from vipkeeper.io.rtnl import NetlinkError

log = logging.getLogger(__name__)

# linux/if_addr.h
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

# /etc/iproute2/rt_scopes; rtnetlink carries the numbers.
SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
_SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}


class InterfaceNotFoundError(LookupError):
    """The named interface does not exist (in this network namespace)."""


@record
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
        import asyncio

        self._rtnl = rtnl.Rtnl()
        # One request at a time: answers are matched to the request in flight.
        self._lock = asyncio.Lock()
        self._indices: dict[str, int] = {}

    async def __aenter__(self) -> AddressManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._rtnl.close()

    async def ifindex(self, interface: str) -> int:
        """The interface's index, cached: a link look-up per address change is what made a
        director with hundreds of VIPs spend its time in netlink."""
        cached = self._indices.get(interface)
        if cached is not None:
            return cached
        index = await rtnl.link_index(self._rtnl, interface)
        if index is None:
            raise InterfaceNotFoundError(f"no interface named {interface!r}")
        self._indices[interface] = index
        return index

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
        """RTM_NEWADDR for `vip`; False when it was already there."""
        sequence = self._send_new_address(vip, await self.ifindex(vip.dev))
        while (error := self._rtnl.answer_now(sequence)) is None:
            await self._rtnl.readable()
        return self._added(vip, error)

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
        error = self._rtnl.answer_now(self._send_new_address(vip, index))
        if error is None or error in (errno.ENODEV, errno.EINVAL):
            return None  # no answer yet, or perhaps a stale index: `add` looks it up again
        return self._added(vip, error)

    def _added(self, vip: VirtualAddress, error: int) -> bool:
        if error == 0:
            import asyncio

            asyncio.get_running_loop().call_soon(
                log.info, "added %s/%d on %s", vip.address, vip.prefixlen, vip.dev
            )
            return True
        if error == errno.EEXIST:
            return False
        raise NetlinkError(error)

    def _send_new_address(self, vip: VirtualAddress, index: int) -> int:
        """Send RTM_NEWADDR for `vip` (IPv4: address, label, local; IPv6: address, and no
        duplicate address detection, since a VIP must answer at once after a takeover); its
        sequence number."""
        address = ipaddress.ip_address(vip.address)
        scope = scope_number(vip.scope) if vip.scope is not None else 0
        if address.version == 4:
            body = rtnl.address_body(
                family=socket.AF_INET, index=index, prefixlen=vip.prefixlen, scope=scope,
                address=str(address), label=vip.label, local=True,
            )  # fmt: skip
        else:
            body = rtnl.address_body(
                family=socket.AF_INET6, index=index, prefixlen=vip.prefixlen, scope=scope,
                address=str(address), extended_flags=IFA_F_NODAD,
            )  # fmt: skip
        flags = rtnl.NLM_F_ACK | rtnl.NLM_F_EXCL | rtnl.NLM_F_CREATE
        return self._rtnl.send(rtnl.RTM_NEWADDR, flags, body)

    async def _delete(self, vip: VirtualAddress) -> bool:
        try:
            index = await self.ifindex(vip.dev)
        except InterfaceNotFoundError:
            return False  # the interface went away, and the address with it
        try:
            await self._rtnl.request(rtnl.RTM_DELADDR, 0, _delete_body(vip, index))
        except NetlinkError as error:
            if error.code in _NOT_THERE:
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
            _log_stale(vip)
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
        dump = rtnl.address_body(family=family, index=index)
        for message in await self._rtnl.request(rtnl.RTM_GETADDR, rtnl.NLM_F_DUMP, dump):
            if message.kind != rtnl.RTM_NEWADDR:
                continue
            item = rtnl.Address(message.body)
            address = item.address()
            if item.index != index or address is None:
                continue
            result.append(
                InterfaceAddress(
                    interface=interface,
                    address=address,
                    prefixlen=item.prefixlen,
                    family=item.family,
                    scope=_SCOPE_NAMES.get(item.scope, str(item.scope)),
                    label=item.label,
                    flags=item.all_flags,
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


# What RTM_DELADDR answers when the address, or its interface, is not there.
_NOT_THERE = (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV)


def _delete_body(vip: VirtualAddress, index: int) -> bytes:
    """RTM_DELADDR's body for `vip` on interface `index`: the kernel matches on address and
    prefix length (IPv4: the local address)."""
    address = ipaddress.ip_address(vip.address)
    return rtnl.address_body(
        family=socket.AF_INET if address.version == 4 else socket.AF_INET6,
        index=index, prefixlen=vip.prefixlen, address=str(address),
        local=address.version == 4,
    )  # fmt: skip


def remove_stale_now(vips: Iterable[VirtualAddress]) -> list[VirtualAddress]:
    """Before the event loop: remove the configured VIPs a previous (killed) run left on their
    interfaces, and return them. Nothing of ours should be present before the first transition
    to Master; a missing interface holds nothing. Raises NetlinkError or TimeoutError when
    rtnetlink refuses or does not answer."""
    channel = rtnl.Rtnl()
    removed = []
    try:
        for vip in vips:
            try:
                index = socket.if_nametoindex(vip.dev)
            except OSError:
                continue
            try:
                channel.request_now(rtnl.RTM_DELADDR, 0, _delete_body(vip, index))
            except NetlinkError as error:
                if error.code in _NOT_THERE:
                    continue
                raise
            removed.append(vip)
            _log_stale(vip)
    finally:
        channel.close()
    return removed


def _log_stale(vip: VirtualAddress) -> None:
    log.warning("removed %s/%d from %s, left by an earlier run", vip.address, vip.prefixlen,
                vip.dev)  # fmt: skip


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
