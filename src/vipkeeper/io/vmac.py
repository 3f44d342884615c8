"""Virtual MAC interfaces (`use_vmac`): a macvlan carrying the RFC virtual router MAC.

Owns: creating the macvlan `NAME` on the instance's interface with the MAC 00-00-5E-00-01-{VRID}
(RFC 3768 §7.3) in private mode, bringing it up, and the kernel settings a macvlan without an
address of its own needs, as keepalived sets them: on the macvlan arp_ignore=1 (answer ARP only
for its own addresses, the VIPs), accept_local=1 and rp_filter=0 (hear adverts though it has no
address), IPv6 off; on the interface below arp_ignore=1 and arp_filter=1 (it must never answer
ARP for a VIP with its own MAC). vipkeeper also sets arp_announce=2 there, which keepalived
does not: replies sent from a VIP leave through the interface below (its route to the client),
and an ARP request it sends for the client would otherwise name the VIP with the interface's
own MAC, pointing the client away from the virtual MAC. `remove` deletes the macvlan and gives
the interface below its earlier settings back.

Private mode matters: a multicast frame whose source MAC is the macvlan's own (the peer's advert
sent from its macvlan) is handed to the macvlan alone, so with adverts on the macvlan the peer
is heard there and not on the interface below.

Must never: delete an interface that is not a macvlan, or decide when the instance may use the
macvlan (the daemon creates it before the instance starts and removes it after it stopped).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vipkeeper.core.records import record

if TYPE_CHECKING:
    from pyroute2.iproute.linux import AsyncIPRoute

log = logging.getLogger(__name__)

PROC_SYS = Path("/proc/sys")
VMAC_SETTINGS = {"arp_ignore": "1", "accept_local": "1", "rp_filter": "0"}
BASE_SETTINGS = {"arp_ignore": "1", "arp_filter": "1", "arp_announce": "2"}


class VmacError(RuntimeError):
    pass


@record
class Vmac:
    """A macvlan for one instance: its name, the interface below, its MAC."""

    name: str
    base: str
    mac: str


def _iproute() -> Any:
    """pyroute2's rtnetlink client, imported with the first macvlan: a daemon without
    `use_vmac` never loads it. Looked up as this module's `AsyncIPRoute`, which tests replace."""
    if "AsyncIPRoute" not in globals():
        from pyroute2.iproute.linux import AsyncIPRoute

        globals()["AsyncIPRoute"] = AsyncIPRoute
    return globals()["AsyncIPRoute"]


def __getattr__(name: str) -> Any:  # PEP 562: `vmac.AsyncIPRoute` before the first macvlan
    if name == "AsyncIPRoute":
        return _iproute()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def no_macvlan_message(vmac: Vmac) -> str:
    return (
        f"use_vmac: cannot create {vmac.name} on {vmac.base}: this kernel has no macvlan"
        " (CONFIG_MACVLAN; try: modprobe macvlan)"
    )


class VmacManager:
    """Creates and removes the instances' macvlans; remembers what it changed to undo it."""

    def __init__(self, proc_sys: Path = PROC_SYS) -> None:
        self._proc_sys = proc_sys
        self._created: dict[str, Vmac] = {}
        self._base_saved: dict[str, dict[str, str]] = {}  # base -> its settings before us

    @property
    def created(self) -> dict[str, Vmac]:
        return dict(self._created)

    async def create(self, vmac: Vmac) -> None:
        """Create (or re-create, if an earlier run left it) `vmac` and bring it up."""
        from pyroute2.netlink.exceptions import NetlinkError

        async with _iproute()() as ipr:
            base = await _index(ipr, vmac.base)
            if base is None:
                raise VmacError(f"use_vmac: cannot create {vmac.name}: no interface {vmac.base}")
            existing = await _link(ipr, vmac.name)
            if existing is not None:
                if _kind(existing) != "macvlan":
                    raise VmacError(f"use_vmac: {vmac.name} exists and is not a macvlan")
                log.warning("use_vmac: re-creating %s, left by an earlier run", vmac.name)
                await ipr.link("del", index=_index_of(existing))
            try:
                await ipr.link(
                    "add",
                    ifname=vmac.name,
                    kind="macvlan",
                    link=base,
                    macvlan_mode="private",
                    address=vmac.mac,
                )
            except NetlinkError as error:
                if error.code == errno.EOPNOTSUPP:
                    raise VmacError(no_macvlan_message(vmac)) from error
                raise VmacError(f"use_vmac: cannot create {vmac.name}: {error}") from error
            self._created[vmac.name] = vmac
            self._configure(vmac)
            index = await _index(ipr, vmac.name)
            await ipr.link("set", index=index, state="up")

    def _configure(self, vmac: Vmac) -> None:
        conf = self._proc_sys / "net/ipv4/conf"
        for key, value in VMAC_SETTINGS.items():
            (conf / vmac.name / key).write_text(value + "\n")
        disable_ipv6 = self._proc_sys / "net/ipv6/conf" / vmac.name / "disable_ipv6"
        if disable_ipv6.exists():
            disable_ipv6.write_text("1\n")
        if vmac.base not in self._base_saved:
            self._base_saved[vmac.base] = {
                key: (conf / vmac.base / key).read_text().strip() for key in BASE_SETTINGS
            }
        for key, value in BASE_SETTINGS.items():
            (conf / vmac.base / key).write_text(value + "\n")

    async def sync(self, wanted: dict[str, Vmac]) -> None:
        """Create the `wanted` macvlans not there yet, remove those no longer wanted. One that
        cannot be created is logged; the instance on it tracks it and stays in FAULT."""
        for name, vmac in self.created.items():
            if wanted.get(name) != vmac:
                await self.remove(name)
        for name, vmac in wanted.items():
            if name in self._created:
                continue
            try:
                await self.create(vmac)
            except VmacError as exc:
                log.error("%s; its instance stays in FAULT", exc)
            except Exception as exc:  # netlink or /proc trouble: the same outcome, said plainly
                log.error("use_vmac: cannot create %s: %s; its instance stays in FAULT", name, exc)
            else:
                log.info("use_vmac: %s (%s) on %s", vmac.name, vmac.mac, vmac.base)

    async def remove(self, name: str) -> None:
        """Delete the macvlan `name` we created; the last one on an interface restores it."""
        vmac = self._created.pop(name, None)
        if vmac is None:
            return
        async with _iproute()() as ipr:
            link = await _link(ipr, name)
            if link is not None and _kind(link) == "macvlan":
                await ipr.link("del", index=_index_of(link))
        if any(other.base == vmac.base for other in self._created.values()):
            return
        saved = self._base_saved.pop(vmac.base, {})
        conf = self._proc_sys / "net/ipv4/conf" / vmac.base
        for key, value in saved.items():
            try:
                (conf / key).write_text(value + "\n")
            except OSError:  # the interface went away meanwhile
                return

    async def remove_all(self) -> None:
        for name in list(self._created):
            try:
                await self.remove(name)
            except Exception as exc:  # go on with the others
                log.error("use_vmac: could not remove %s: %s", name, exc)


async def _link(ipr: AsyncIPRoute, name: str) -> object | None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        links = list(await ipr.link("get", ifname=name))
    except NetlinkError as error:
        if error.code == errno.ENODEV:
            return None
        raise
    return links[0] if links else None


async def _index(ipr: AsyncIPRoute, name: str) -> int | None:
    link = await _link(ipr, name)
    return None if link is None else _index_of(link)


def _index_of(link: object) -> int:
    return int(link["index"])  # type: ignore[index]


def _kind(link: object) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    return None if info is None else info.get_attr("IFLA_INFO_KIND")
