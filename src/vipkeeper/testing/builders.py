"""Builders for driving the cores by hand: VRRP settings, a started instance, a received
advert, a health-checked virtual server.

Owns the test topology the unit suites share: this router (ME) and its peer (PEER) on one
segment, instance VI_1 on eth0 with VRID 51, priority 100 and one virtual address (VIP).
Must never: read a clock or open a socket (time is the `now` passed in).
"""

from __future__ import annotations

import typing

from vipkeeper.core.effects import Effect
from vipkeeper.core.events import PacketReceived, SourceAddressChanged, Started
from vipkeeper.core.health import CheckerSpec, Endpoint, RealServerSpec, VirtualServerSpec
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp import VrrpInstance
from vipkeeper.core.vrrp_numbers import MULTICAST_V4, MULTICAST_V6
from vipkeeper.core.vrrp_settings import InstanceSettings
from vipkeeper.core.vrrp_wire import Advertisement, encode

VIP = VirtualAddress(address="172.16.9.1", prefixlen=32, dev="eth0")
ME = "192.168.0.53"
PEER = "192.168.0.57"
VRID = 51


def instance_settings(**overrides: typing.Any) -> InstanceSettings:
    """VI_1 on eth0, VRID 51, priority 100, holding VIP; `overrides` replace any field."""
    base: dict[str, typing.Any] = {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": VRID,
        "priority": 100,
        "virtual_addresses": (VIP,),
    }
    base.update(overrides)
    return InstanceSettings(**base)


def start(
    settings: InstanceSettings, now: float = 0.0, address: str | None = ME
) -> tuple[VrrpInstance, list[Effect]]:
    """A new instance told its source address (unless None) and started; what Started gave."""
    instance = VrrpInstance(settings)
    if address is not None:
        instance.handle(SourceAddressChanged(address=address), now)
    return instance, instance.handle(Started(), now)


def advert(
    source: str = PEER,
    priority: int = 100,
    *,
    version: int = 2,
    interval: int | None = None,
    ttl: int = 255,
    destination: str | None = None,
    **fields: typing.Any,
) -> PacketReceived:
    """An advertisement from `source` as the instance receives it; `interval` in the
    version's wire unit (v2 seconds, v3 centiseconds), one second by default; `fields` set
    the rest of the message (vrid 51 and VIP's address by default, auth_type, auth_data)."""
    if destination is None:
        destination = MULTICAST_V4 if ":" not in source else MULTICAST_V6
    if interval is None:
        interval = 1 if version == 2 else 100
    rest: dict[str, typing.Any] = {"vrid": VRID, "addresses": (VIP.address,), **fields}
    message = Advertisement(version=version, priority=priority, wire_interval=interval, **rest)
    payload = encode(message, source=source, destination=destination)
    return PacketReceived(source=source, destination=destination, ttl=ttl, payload=payload)


def virtual_server_spec(
    servers: typing.Iterable[Endpoint], checker: CheckerSpec, name: str = "vs"
) -> VirtualServerSpec:
    """Virtual server `name` whose real servers each run one `checker`."""
    return VirtualServerSpec(
        name=name,
        real_servers=tuple(RealServerSpec(server=e, checkers=(checker,)) for e in servers),
    )
