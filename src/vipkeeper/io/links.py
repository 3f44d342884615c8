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

from vipkeeper.core.records import record
from vipkeeper.io import rtnl
from vipkeeper.io.cancel import cancel_and_wait

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40


@record
class LinkChanged:
    """`interface` went up or down (or disappeared: up=False)."""

    interface: str
    up: bool


@record
class AddressChanged:
    """`address` was added to (`added`) or removed from `interface`."""

    interface: str
    family: int  # socket.AF_INET or socket.AF_INET6
    address: str
    prefixlen: int
    added: bool


LinkEvent = LinkChanged | AddressChanged


def link_is_up(link: rtnl.Link) -> bool:
    return bool(link.flags & IFF_UP) and bool(link.flags & IFF_RUNNING)


async def link_states() -> dict[str, bool]:
    """Every interface of this network namespace and whether it is up, right now."""
    connection = rtnl.Rtnl()
    try:
        return {link.name: link_is_up(link) for link in await rtnl.links(connection) if link.name}
    finally:
        connection.close()


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
        self._events: rtnl.Rtnl | None = None
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
        events = rtnl.Rtnl(rtnl.RTMGRP_LINK | rtnl.RTMGRP_IPV4_IFADDR | rtnl.RTMGRP_IPV6_IFADDR)
        events.socket()  # subscribed from here on
        self._events = events
        snapshot = rtnl.Rtnl()
        try:
            fresh: dict[str, bool] = {}
            names: dict[int, str] = {}
            for link in await rtnl.links(snapshot):
                if link.name:
                    fresh[link.name] = link_is_up(link)
                    names[link.index] = link.name
        finally:
            snapshot.close()
        previous, self.states, self._names = self.states, fresh, names
        for name in previous.keys() | fresh.keys():
            if previous and previous.get(name, False) != fresh.get(name, False):
                self._emit(LinkChanged(interface=name, up=fresh.get(name, False)))

    async def _listen(self) -> None:
        while True:
            assert self._events is not None
            try:
                for message in rtnl.messages(await self._events.receive()):
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

    def _handle(self, message: rtnl.Message) -> None:
        if message.kind in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK):
            link = rtnl.Link(message.body)
            name, index = link.name, link.index
            if name is None:
                return
            if message.kind == rtnl.RTM_DELLINK:
                self._names.pop(index, None)
                if self.states.pop(name, False):
                    self._emit(LinkChanged(interface=name, up=False))
                return
            old_name = self._names.get(index)
            if old_name is not None and old_name != name and self.states.pop(old_name, False):
                self._emit(LinkChanged(interface=old_name, up=False))  # renamed away
            self._names[index] = name
            up = link_is_up(link)
            if self.states.get(name) != up:
                self.states[name] = up
                self._emit(LinkChanged(interface=name, up=up))
        elif message.kind in (rtnl.RTM_NEWADDR, rtnl.RTM_DELADDR):
            item = rtnl.Address(message.body)
            name = self._names.get(item.index)
            address = item.address()
            if name is None or address is None:
                return
            self._emit(
                AddressChanged(
                    interface=name,
                    family=socket.AddressFamily(item.family),
                    address=address,
                    prefixlen=item.prefixlen,
                    added=message.kind == rtnl.RTM_NEWADDR,
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
