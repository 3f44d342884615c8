"""More virtual addresses than an advert can carry (its count is one byte, RFC 9568 §5.2.5):
the instance still becomes Master and advertises, with the first 255 addresses in the advert
(keepalived moves the rest out of the advert the same way) and every address added.
"""

from __future__ import annotations

from vipkeeper.core.effects import AddVips, SendAdvert
from vipkeeper.core.events import SourceAddressChanged, Started, TimerFired
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp import InstanceSettings, VrrpInstance
from vipkeeper.core.vrrp_wire import MAX_ADDRESSES, decode

MANY = tuple(
    VirtualAddress(address=f"10.1.{n // 250}.{n % 250 + 1}", prefixlen=32, dev="eth0")
    for n in range(1000)
)


def test_an_instance_with_1000_vips_becomes_master_and_advertises_the_first_255() -> None:
    settings = InstanceSettings(
        name="VI_1", interface="eth0", vrid=51, priority=100, virtual_addresses=MANY
    )
    instance = VrrpInstance(settings)
    instance.handle(SourceAddressChanged(address="192.168.0.53"), 0.0)
    instance.handle(Started(), 0.0)
    deadline = instance.next_deadline()
    assert deadline is not None
    effects = instance.handle(TimerFired(), deadline)
    adverts = [e for e in effects if isinstance(e, SendAdvert)]
    assert adverts, effects
    advert = decode(
        adverts[0].payload, source=adverts[0].source, destination=adverts[0].destination
    )
    assert MAX_ADDRESSES == 255
    assert advert.addresses == tuple(v.address for v in MANY[:MAX_ADDRESSES])
    added = [a for e in effects if isinstance(e, AddVips) for a in e.addresses]
    assert added == list(MANY)
