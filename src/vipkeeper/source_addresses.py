"""The address each VRRP instance speaks from: its interface's primary address, kept current.

Owns the look-ups (one per burst of address events) and tells an instance only when its source
changed; an instance with `unicast_src_ip`, and the daemon's own VIPs, are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable

from vipkeeper.assemble import Plan
from vipkeeper.core.events import Event, SourceAddressChanged
from vipkeeper.core.vrrp_settings import InstanceSettings
from vipkeeper.io.addresses import AddressManager
from vipkeeper.io.vrrp_raw import socket_family

log = logging.getLogger("vipkeeper")


class SourceAddresses:
    """Feeds `SourceAddressChanged` to an instance (by name) through `feed`."""

    def __init__(
        self,
        addresses: AddressManager,
        feed: Callable[[str, Event], None],
        spawn: Callable[[Coroutine[object, object, object]], None],
    ) -> None:
        self._addresses = addresses
        self._feed = feed
        self._spawn = spawn
        self._plan = Plan(settings={}, groups={}, solo=())
        self.own_vips: frozenset[str] = frozenset()
        self._sources: dict[str, str | None] = {}
        self._refresh_pending: set[tuple[str, int]] = set()

    def use(self, plan: Plan, started: Iterable[str]) -> None:
        """`plan` is in force; the instances `started` have been told nothing yet."""
        self._plan = plan
        self.own_vips = frozenset(
            v.address for s in plan.settings.values() for v in s.virtual_addresses
        )
        for name in started:
            self._sources.pop(name, None)

    async def refresh(self, interface: str, family: int, items: Iterable[InstanceSettings]) -> None:
        """Look up the interface's primary address once and tell every instance that speaks
        from it (unless it has a configured unicast_src_ip) when it changed."""
        items = [item for item in items if not item.unicast_src_ip]
        if not items:
            return
        try:
            source = await self._addresses.primary_address(interface, socket_family(family))
        except LookupError:
            source = None
        except Exception as exc:  # netlink trouble: keep the old address, say so
            log.warning("cannot read the addresses of %s: %s", interface, exc)
            return
        if source is not None and source in self.own_vips:
            return  # our own VIP is never the address we speak from
        for item in items:
            if self._sources.get(item.name, "unset") == source:
                continue
            self._sources[item.name] = source
            self._feed(item.name, SourceAddressChanged(address=source))

    def address_changed(self, address: str, interface: str, family: int) -> None:
        if address in self.own_vips:
            return  # our own doing: it never changes the address we speak from
        # Address events come in bursts (a Master adding many VIPs): one lookup per burst.
        key = (interface, family)
        if key in self._refresh_pending:
            return
        self._refresh_pending.add(key)

        async def refresh() -> None:
            self._refresh_pending.discard(key)
            items = [
                s
                for s in self._plan.settings.values()
                if self._plan.source_interface(s) == interface and s.family == family
            ]
            await self.refresh(interface, family, items)

        self._spawn(refresh())
