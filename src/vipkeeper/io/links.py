"""Interface state and address changes from rtnetlink, for track_interface and source selection.

Owns: a one-shot snapshot of every interface's state (`link_states`), and `LinkMonitor`, which
subscribes to RTM_NEWLINK / RTM_DELLINK and RTM_NEWADDR / RTM_DELADDR and turns them into facts:
`LinkChanged(interface, up)` only when an interface's state really changed, and `AddressChanged`
for each address added to or removed from an interface (the driver then asks
`AddressManager.primary_address` whether the VRRP source changed).

An interface is up when it is administratively up (IFF_UP) and has carrier / operational state
up (IFF_RUNNING), the same notion `ip link` shows as "state UP" plus devices without carrier
reporting (operstate UNKNOWN, e.g. loopback).

Must never: decide what a change means for an instance (the core does), or poll.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

from vipkeeper.io.cancel import cancel_and_wait

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40


@dataclass(frozen=True, kw_only=True)
class LinkChanged:
    """`interface` went up or down (or disappeared: up=False)."""

    interface: str
    up: bool


@dataclass(frozen=True, kw_only=True)
class AddressChanged:
    """`address` was added to (`added`) or removed from `interface`."""

    interface: str
    family: int  # socket.AF_INET or socket.AF_INET6
    address: str
    prefixlen: int
    added: bool


LinkEvent = LinkChanged | AddressChanged


def link_is_up(message: Any) -> bool:
    flags = int(message["flags"])
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


async def link_states() -> dict[str, bool]:
    """Every interface of this network namespace and whether it is up, right now."""
    async with AsyncIPRoute() as ipr:
        return {
            message.get_attr("IFLA_IFNAME"): link_is_up(message)
            async for message in await ipr.link("dump")
        }


class LinkMonitor:
    """Watches links and addresses; `await LinkMonitor.open()`, then iterate or use a callback.

    `states` holds the current up/down state of every interface, taken right after subscribing so
    no change between the snapshot and the first event is lost. Events go to `on_event` when one
    was given, else into a queue read with `async for event in monitor`. If the kernel drops
    notifications (socket buffer overrun) the monitor resubscribes and emits the differences
    against a fresh snapshot.
    """

    def __init__(self, on_event: Callable[[LinkEvent], None] | None = None) -> None:
        self.states: dict[str, bool] = {}
        self._names: dict[int, str] = {}
        self._on_event = on_event
        self._queue: asyncio.Queue[LinkEvent | None] = asyncio.Queue()
        self._events: Any = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, on_event: Callable[[LinkEvent], None] | None = None) -> LinkMonitor:
        monitor = cls(on_event)
        await monitor._subscribe()
        monitor._task = asyncio.get_running_loop().create_task(
            monitor._listen(), name="link-monitor"
        )
        return monitor

    def is_up(self, interface: str) -> bool:
        return self.states.get(interface, False)

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._events is not None:
            self._events.close()
            self._events = None
        self._queue.put_nowait(None)

    async def __aenter__(self) -> LinkMonitor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def __aiter__(self) -> AsyncIterator[LinkEvent]:
        while (event := await self._queue.get()) is not None:
            yield event
        self._queue.put_nowait(None)

    async def _subscribe(self) -> None:
        events = AsyncIPRoute()
        await events.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        self._events = events
        async with AsyncIPRoute() as ipr:
            fresh: dict[str, bool] = {}
            names: dict[int, str] = {}
            async for message in await ipr.link("dump"):
                name = message.get_attr("IFLA_IFNAME")
                fresh[name] = link_is_up(message)
                names[message["index"]] = name
        previous, self.states, self._names = self.states, fresh, names
        for name in previous.keys() | fresh.keys():
            if previous and previous.get(name, False) != fresh.get(name, False):
                self._emit(LinkChanged(interface=name, up=fresh.get(name, False)))

    async def _listen(self) -> None:
        while True:
            try:
                async for message in self._events.get():
                    self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # ENOBUFS and friends: start over from a snapshot
                log.warning("netlink monitor lost events (%s); resynchronising", error)
                self._events.close()
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        while True:
            try:
                await self._subscribe()
                return
            except OSError as error:
                log.warning("netlink monitor cannot resubscribe (%s); retrying in 1s", error)
                await asyncio.sleep(1.0)

    def _handle(self, message: Any) -> None:
        event = message.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            name = message.get_attr("IFLA_IFNAME")
            index = message["index"]
            if name is None:
                return
            if event == "RTM_DELLINK":
                self._names.pop(index, None)
                if self.states.pop(name, False):
                    self._emit(LinkChanged(interface=name, up=False))
                return
            old_name = self._names.get(index)
            if old_name is not None and old_name != name and self.states.pop(old_name, False):
                self._emit(LinkChanged(interface=old_name, up=False))  # renamed away
            self._names[index] = name
            up = link_is_up(message)
            if self.states.get(name) != up:
                self.states[name] = up
                self._emit(LinkChanged(interface=name, up=up))
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self._names.get(message["index"])
            address = message.get_attr("IFA_ADDRESS")
            if name is None or address is None:
                return
            self._emit(
                AddressChanged(
                    interface=name,
                    family=socket.AddressFamily(message["family"]),
                    address=address,
                    prefixlen=message["prefixlen"],
                    added=event == "RTM_NEWADDR",
                )
            )

    def _emit(self, event: LinkEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("link event callback failed")
        else:
            self._queue.put_nowait(event)
