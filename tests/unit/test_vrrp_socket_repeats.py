"""VrrpSocket.read_repeats: what the autopilot's Watch reads from a lazily read socket.

The raw socket is replaced by a scripted one (datagrams as the kernel returns them: IPv4 header
included, SO_TIMESTAMPNS ancillary data), so no privileges or interfaces are needed.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from vipkeeper.core.vrrp_numbers import MULTICAST_V4 as GROUP
from vipkeeper.core.vrrp_wire import Advertisement, encode
from vipkeeper.io.vrrp_socket import VrrpSocket

SOURCE = "192.0.2.1"


def advert(vrid: int = 51, priority: int = 150) -> bytes:
    message = Advertisement(
        version=3, vrid=vrid, priority=priority, addresses=("192.0.2.50",), wire_interval=1
    )
    return encode(message, source=SOURCE, destination=GROUP)


def datagram(payload: bytes, ident: int, source: str = SOURCE) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0xC0,
        20 + len(payload),
        ident,
        0,
        255,
        112,
        0,
        socket.inet_aton(source),
        socket.inet_aton(GROUP),
    )
    return header + payload


def stamped(wall: float) -> list[tuple[int, int, bytes]]:
    seconds = int(wall)
    return [(socket.SOL_SOCKET, 35, struct.pack("=qq", seconds, int((wall - seconds) * 1e9)))]


class ScriptedSocket:
    def __init__(self, real: socket.socket, items: list[tuple[bytes, float]]) -> None:
        self._real = real
        self._items = list(items)

    def fileno(self) -> int:
        return self._real.fileno()

    def recvmsg(self, size: int, ancillary_size: int):
        if not self._items:
            raise BlockingIOError
        data, wall = self._items.pop(0)
        return data, stamped(wall), 0, (SOURCE, 0)


@pytest.fixture
async def make_socket():
    made = []

    def make(items: list[tuple[bytes, float]]) -> VrrpSocket:
        real, other = socket.socketpair()
        made.extend((real, other))
        vrrp = VrrpSocket(
            interface="eth0", family=socket.AF_INET, sock=real, ifindex=1, on_packet=None
        )
        vrrp._sock = ScriptedSocket(real, items)  # type: ignore[assignment]
        return vrrp

    yield make
    for sock in made:
        sock.close()


ECHO = (advert(), SOURCE, GROUP, 255)


async def test_repeats_are_counted_and_the_last_arrival_is_kept(make_socket):
    wall = time.time()
    sock = make_socket([(datagram(advert(), i), wall - 0.03 + i * 0.01) for i in range(3)])
    count, last, other = sock.read_repeats(ECHO)
    assert count == 3
    assert other is None
    # The third datagram's kernel time, on the monotonic clock.
    expected = time.monotonic() - (time.time() - (wall - 0.01))
    assert last == pytest.approx(expected, abs=0.005)


async def test_a_different_advert_stops_the_read_and_is_returned(make_socket):
    wall = time.time()
    sock = make_socket(
        [
            (datagram(advert(), 1), wall - 0.02),
            (datagram(advert(priority=0), 2), wall - 0.01),
            (datagram(advert(), 3), wall),
        ]
    )
    count, _last, other = sock.read_repeats(ECHO)
    assert count == 1
    assert other is not None
    packet, _arrived = other
    assert packet.payload == advert(priority=0)
    assert packet.source == SOURCE
    # The third datagram stays in the socket for the loop.
    assert sock.read_repeats(ECHO)[0] == 1


async def test_other_vrids_are_skipped_and_counted(make_socket):
    wall = time.time()
    sock = make_socket(
        [
            (datagram(advert(), 1), wall - 0.02),
            (datagram(advert(vrid=52), 2), wall - 0.015),
            (datagram(advert(), 3), wall - 0.01),
        ]
    )
    count, _last, other = sock.read_repeats(ECHO)
    assert (count, other, sock.foreign_skipped) == (2, None, 1)


async def test_the_same_advert_from_another_router_is_not_a_repeat(make_socket):
    sock = make_socket([(datagram(advert(), 1, source="192.0.2.9"), time.time())])
    count, _last, other = sock.read_repeats(ECHO)
    assert count == 0
    assert other is not None and other[0].source == "192.0.2.9"
