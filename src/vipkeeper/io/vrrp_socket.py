"""Raw IP protocol 112 sockets for VRRP, IPv4 and IPv6, driven by the asyncio event loop.

Owns: one non-blocking raw socket per (interface, address family), its options (bound to the
device, TTL / hop limit 255 on everything sent, membership of 224.0.0.18 / ff02::12 on that
interface only, no multicast loopback), sending a VRRP message from a chosen source address, and
turning each received datagram into a `PacketReceived` fact with the IP source, destination and
TTL / hop limit the kernel saw.

Must never: encode, decode or judge VRRP messages (checksums included: the payload comes
ready-made from `vipkeeper.core.vrrp_wire`, which covers the IPv6 pseudo-header itself), filter by
VRID or TTL (RFC 9568 §7.1 checks are the core's), or block the loop (reads run from
`loop.add_reader`, sends never wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from vipkeeper.core.events import PacketReceived

log = logging.getLogger(__name__)

VRRP_PROTOCOL = 112  # RFC 9568 §5.1.1.4 / §5.1.2.4
VRRP_TTL = 255  # RFC 9568 §5.1.1.3: a router must send with TTL / hop limit 255
VRRP_GROUP_V4 = "224.0.0.18"  # RFC 9568 §5.1.1.2
VRRP_GROUP_V6 = "ff02::12"  # RFC 9568 §5.1.2.2

# Not exported by Python's socket module on every version (linux/in.h, linux/in6.h).
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
_IPV6_MULTICAST_ALL = 29

# The largest VRRP datagram: an IPv6 payload of 8 + 255 x 16 bytes (IPv4 with options is
# smaller). A 64 KiB buffer per recv() cost more than the packet's whole processing.
_RECEIVE_SIZE = 4200
_ANCILLARY_SIZE = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20)
_QUEUE_LIMIT = 1024

PacketCallback = Callable[[PacketReceived], None]


class PacketSink(Protocol):
    """What `VrrpSocketPool` hands every packet to (`Driver.packet_received` fits)."""

    def __call__(
        self,
        *,
        interface: str,
        family: int,
        source: str,
        destination: str,
        ttl: int,
        payload: bytes,
    ) -> None: ...


class VrrpSocket:
    """A raw protocol-112 socket on one interface for one address family.

    Open it with `await VrrpSocket.open("eth0", socket.AF_INET)`. Received packets go to the
    `on_packet` callback when one was given, otherwise into a bounded queue read with
    `await receive()` or `async for packet in sock`. Several VRRP instances on the same interface
    share one socket; the caller demultiplexes by VRID.
    """

    def __init__(
        self,
        *,
        interface: str,
        family: socket.AddressFamily,
        sock: socket.socket,
        ifindex: int,
        on_packet: PacketCallback | None,
    ) -> None:
        self.interface = interface
        self.family = family
        self.ifindex = ifindex
        self._sock = sock
        self._on_packet = on_packet
        self._queue: asyncio.Queue[PacketReceived | None] = asyncio.Queue(_QUEUE_LIMIT)
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(
        cls,
        interface: str,
        family: socket.AddressFamily | int = socket.AF_INET,
        *,
        on_packet: PacketCallback | None = None,
    ) -> VrrpSocket:
        """Open and configure the socket; raises OSError (e.g. ENODEV) if that is impossible."""
        return cls.open_now(interface, family, on_packet=on_packet)

    @classmethod
    def open_now(
        cls,
        interface: str,
        family: socket.AddressFamily | int = socket.AF_INET,
        *,
        on_packet: PacketCallback | None = None,
    ) -> VrrpSocket:
        """`open` for callers that cannot await; must run inside the event loop."""
        family = socket.AddressFamily(family)
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"VRRP runs over AF_INET or AF_INET6, not {family!r}")
        ifindex = socket.if_nametoindex(interface)
        sock = socket.socket(family, socket.SOCK_RAW, VRRP_PROTOCOL)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            if family == socket.AF_INET:
                _configure_ipv4(sock, ifindex)
            else:
                _configure_ipv6(sock, ifindex)
        except BaseException:
            sock.close()
            raise
        return cls(
            interface=interface, family=family, sock=sock, ifindex=ifindex, on_packet=on_packet
        )

    def send(self, source: str, destination: str, payload: bytes) -> None:
        """Send one VRRP message from `source` to `destination` (multicast group or a peer).

        Never waits: if the socket buffer is full the message is dropped with a warning (the next
        advertisement follows within one interval). Other errors (ENETDOWN, EADDRNOTAVAIL when
        `source` is not local) are raised as OSError.
        """
        if self._closed:
            raise OSError("VRRP socket is closed")
        try:
            if self.family == socket.AF_INET:
                pktinfo = struct.pack("=I4s4s", self.ifindex, socket.inet_aton(source), bytes(4))
                self._sock.sendmsg(
                    [payload],
                    [(socket.IPPROTO_IP, _IP_PKTINFO, pktinfo)],
                    0,
                    (destination, 0),
                )
            else:
                pktinfo = struct.pack(
                    "=16sI", socket.inet_pton(socket.AF_INET6, source), self.ifindex
                )
                self._sock.sendmsg(
                    [payload],
                    [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)],
                    0,
                    (destination, 0, 0, self.ifindex),
                )
        except BlockingIOError:
            log.warning(
                "%s: send buffer full, VRRP message to %s dropped", self.interface, destination
            )

    async def receive(self) -> PacketReceived:
        """The next received packet (only when no `on_packet` callback was given)."""
        packet = await self._queue.get()
        if packet is None:
            self._queue.put_nowait(None)  # wake every other waiter too
            raise EOFError("VRRP socket closed")
        return packet

    async def __aiter__(self) -> AsyncIterator[PacketReceived]:
        while True:
            try:
                yield await self.receive()
            except EOFError:
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def __aenter__(self) -> VrrpSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _readable(self) -> None:
        # Drain what is there now, without starving the loop when a peer floods us.
        for _ in range(64):
            try:
                if self.family == socket.AF_INET:
                    packet = self._receive_ipv4()
                else:
                    packet = self._receive_ipv6()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("%s: receive failed: %s", self.interface, error)
                return
            if packet is not None:
                self._deliver(packet)

    def _deliver(self, packet: PacketReceived) -> None:
        if self._on_packet is not None:
            try:
                self._on_packet(packet)
            except Exception:
                log.exception("%s: packet callback failed", self.interface)
            return
        try:
            self._queue.put_nowait(packet)
        except asyncio.QueueFull:
            log.warning("%s: receive queue full, VRRP packet dropped", self.interface)

    def _receive_ipv4(self) -> PacketReceived | None:
        datagram = self._sock.recv(_RECEIVE_SIZE)
        return parse_ipv4_datagram(datagram)

    def _receive_ipv6(self) -> PacketReceived | None:
        payload, ancillary, _flags, address = self._sock.recvmsg(_RECEIVE_SIZE, _ANCILLARY_SIZE)
        hop_limit: int | None = None
        destination: str | None = None
        for level, kind, data in ancillary:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
                (hop_limit,) = struct.unpack("=i", data[:4])
            elif kind == socket.IPV6_PKTINFO and len(data) >= 16:
                destination = socket.inet_ntop(socket.AF_INET6, data[:16])
        if hop_limit is None or destination is None:
            log.debug("%s: IPv6 packet without hop limit or pktinfo ignored", self.interface)
            return None
        source = str(address[0]).split("%", 1)[0]
        return PacketReceived(
            source=source, destination=destination, ttl=hop_limit, payload=payload
        )


def parse_ipv4_datagram(datagram: bytes) -> PacketReceived | None:
    """A `PacketReceived` from an IPv4 datagram as a raw socket returns it, header included.

    Options are skipped using the header length (IHL); None for anything that is not a well
    formed IPv4 protocol-112 datagram.
    """
    if len(datagram) < 20 or datagram[0] >> 4 != 4:
        return None
    header_length = (datagram[0] & 0x0F) * 4
    (total_length,) = struct.unpack_from("!H", datagram, 2)
    if header_length < 20 or len(datagram) < header_length or datagram[9] != VRRP_PROTOCOL:
        return None
    end = min(total_length, len(datagram)) if total_length >= header_length else len(datagram)
    return PacketReceived(
        source=socket.inet_ntoa(datagram[12:16]),
        destination=socket.inet_ntoa(datagram[16:20]),
        ttl=datagram[8],
        payload=bytes(datagram[header_length:end]),
    )


def _configure_ipv4(sock: socket.socket, ifindex: int) -> None:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    # Only the groups this socket joined, not every group some other socket joined.
    sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
    mreqn = struct.pack("=4s4si", socket.inet_aton(VRRP_GROUP_V4), bytes(4), ifindex)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)


def _configure_ipv6(sock: socket.socket, ifindex: int) -> None:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MULTICAST_ALL, 0)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    mreq = struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, VRRP_GROUP_V6), ifindex)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)


class VrrpSocketPool:
    """One `VrrpSocket` per (interface, family), shared by every instance on that interface.

    `send(interface=, source=, destination=, payload=)` picks (and, the first time, opens) the
    socket for the destination's family; every received packet goes to `sink` with the interface
    and family it arrived on, for the driver to route by VRID. Open sockets up front with
    `await pool.open(interface, family)` so that Backup instances hear advertisements before
    they ever send.
    """

    def __init__(self, sink: PacketSink) -> None:
        self._sink = sink
        self._sockets: dict[tuple[str, int], VrrpSocket] = {}

    async def open(self, interface: str, family: socket.AddressFamily | int) -> VrrpSocket:
        return self._socket(interface, socket.AddressFamily(family))

    def send(self, *, interface: str, source: str, destination: str, payload: bytes) -> None:
        version = ipaddress.ip_address(destination).version
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        self._socket(interface, family).send(source, destination, payload)

    def reopen(self, interface: str) -> None:
        """Drop the interface's sockets (e.g. it was deleted and created again); the next
        `open` or `send` binds fresh ones."""
        for key in [key for key in self._sockets if key[0] == interface]:
            self._sockets.pop(key).close()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _socket(self, interface: str, family: socket.AddressFamily) -> VrrpSocket:
        key = (interface, int(family))
        existing = self._sockets.get(key)
        if existing is not None:
            return existing

        def deliver(packet: PacketReceived) -> None:
            self._sink(
                interface=interface,
                family=int(family),
                source=packet.source,
                destination=packet.destination,
                ttl=packet.ttl,
                payload=packet.payload,
            )

        opened = VrrpSocket.open_now(interface, family, on_packet=deliver)
        self._sockets[key] = opened
        return opened
