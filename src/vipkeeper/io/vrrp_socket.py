"""Raw IP protocol 112 sockets for VRRP, IPv4 and IPv6, read by the asyncio loop or the autopilot.

Owns: one non-blocking raw socket per (interface, address family), opened and configured by
`vipkeeper.io.vrrp_raw` (here, or before the loop by `vipkeeper.launch`, and then adopted),
sending a VRRP message from a chosen source address, and turning each received datagram into a
`PacketReceived` fact with the IP source, destination and TTL / hop limit the kernel saw.

Must never: encode, decode or judge VRRP messages (checksums included: the payload comes
ready-made from `vipkeeper.core.vrrp_wire`, which covers the IPv6 pseudo-header itself), apply
RFC 9568 §7.1's checks (they are the core's), or block (reads and sends never wait).

Three ways to read. *Eager* (the default): a reader on the loop handles every datagram as it
arrives. *Lazy* (`set_lazy(True)`, used while every instance on the interface is a Backup): nothing
watches the socket; the driver calls `drain()` just before it fires any timer, and each datagram
is handed over with the kernel's receive time (SO_TIMESTAMPNS), so a Backup's Master_Down_Timer is
restarted from when the advertisement really arrived. A Backup then wakes once per
Master_Down_Interval instead of once per advertisement. The one advertisement a Backup must act on
at once -- priority 0, a Master leaving (RFC 9568 §6.4.2) -- rings a *doorbell*: a second socket on
the same interface whose classic BPF filter admits only priority-0 VRRP messages; its reader
drains the main socket. *Repeats* (`read_repeats`, from the autopilot's thread while it holds the
socket and the loop does not read it): byte-for-byte copies of one expected advertisement are
counted without decoding, other VRIDs' datagrams are skipped and counted (`foreign_skipped`), and
the first other datagram is handed back for the loop. Datagrams the kernel dropped for want of
buffer space are counted (SO_RXQ_OVFL).

The module is long on purpose: the three ways to read are one socket's state (its queue, its
lazy flag, its doorbell, the autopilot's hook) and change each other's invariants; kept in one
class they can be checked together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from vipkeeper.core.events import PacketReceived
from vipkeeper.core.steady import Echo
from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL
from vipkeeper.io.vrrp_raw import SO_RXQ_OVFL, SO_TIMESTAMPNS, configure, open_raw

log = logging.getLogger(__name__)


# Not exported by Python's socket module on every version (linux/in.h, linux/in6.h).
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)

# The largest VRRP datagram: an IPv6 payload of 8 + 255 x 16 bytes (IPv4 with options is
# smaller). A 64 KiB buffer per recv() cost more than the packet's whole processing.
_RECEIVE_SIZE = 4200
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_ANCILLARY_SIZE = (
    socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20) + socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4)
)
_QUEUE_LIMIT = 1024
# Reads per eager wake-up, so a flood cannot starve the loop; a drain reads up to this many.
_EAGER_BATCH = 64
_DRAIN_LIMIT = 100_000
_TIMESPEC = struct.Struct("=qq")
# A kernel timestamp further back than this is not believed (the wall clock was stepped).
_MAX_RECEIVE_AGE = 5.0

PacketCallback = Callable[[PacketReceived, float], None]
"""Called with each packet and the loop time (`loop.time()` clock) at which it arrived."""


def _arrival_time(stamp: float | None, offset: float, now: float) -> float:
    """A kernel receive time (wall clock) moved onto the monotonic clock by `offset`; `now`
    when there is none or it is not believable (in the future, or older than a stepped clock
    could explain)."""
    if stamp is None:
        return now
    arrived = stamp + offset
    return arrived if now - _MAX_RECEIVE_AGE <= arrived <= now else now


def _priority_zero_filter(ip_header: bool) -> bytes:
    """A classic BPF program admitting only VRRP messages whose priority byte (offset 2) is 0.

    An IPv4 raw socket's filter sees the IP header first (its length is 4 x IHL); an IPv6 raw
    socket's sees the VRRP message itself.
    """
    ld_b_abs, ldx_msh, ld_b_ind, jeq_k, ret_k = 0x30, 0xB1, 0x50, 0x15, 0x06
    load = [(ldx_msh, 0, 0, 0), (ld_b_ind, 0, 0, 2)] if ip_header else [(ld_b_abs, 0, 0, 2)]
    program = [*load, (jeq_k, 0, 1, 0), (ret_k, 0, 0, 0xFFFF), (ret_k, 0, 0, 0)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


class PacketSink(Protocol):
    """What `VrrpSocketPool` hands every packet to (`Driver.receive` fits): the interface and
    address family it arrived on, the packet, and when it arrived on the loop's clock."""

    def __call__(
        self, interface: str, family: int, packet: PacketReceived, received_at: float, /
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
        self._lazy = False
        self._doorbell: socket.socket | None = None
        self.kernel_drops = 0  # datagrams the kernel dropped: receive buffer full (SO_RXQ_OVFL)
        self._last_datagram = b""
        self._pktinfo: dict[str, list[tuple[int, int, bytes]]] = {}
        self._addresses: dict[str, tuple[str, int] | tuple[str, int, int, int]] = {}
        self._last_packet: PacketReceived | None = None
        # Set while the autopilot (`io.autopilot`) reads this socket: called, in the loop, before
        # the loop reads or reconfigures the socket, to take it back.
        self.pilot_hook: Callable[[], None] | None = None
        # Other VRIDs' advertisements the autopilot read and let go (it only holds a socket no
        # other instance of ours uses, so the loop would only have counted them unclaimed).
        self.foreign_skipped = 0
        self._prepared_echo: tuple[Echo, bytes] | None = None
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
        sock, ifindex = open_raw(interface, family)
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
        ancillary = self._pktinfo.get(source)
        if ancillary is None:
            ancillary = self._pktinfo[source] = [self._source_pktinfo(source)]
        address = self._addresses.get(destination)
        if address is None:
            if self.family == socket.AF_INET:
                address = self._addresses[destination] = (destination, 0)
            else:
                address = self._addresses[destination] = (destination, 0, 0, self.ifindex)
        try:
            self._sock.sendmsg([payload], ancillary, 0, address)
        except BlockingIOError:
            log.warning(
                "%s: send buffer full, VRRP message to %s dropped", self.interface, destination
            )

    def _source_pktinfo(self, source: str) -> tuple[int, int, bytes]:
        """The IP_PKTINFO / IPV6_PKTINFO control message that sends from `source`."""
        if self.family == socket.AF_INET:
            data = struct.pack("=I4s4s", self.ifindex, socket.inet_aton(source), bytes(4))
            return (socket.IPPROTO_IP, _IP_PKTINFO, data)
        data = struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, source), self.ifindex)
        return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, data)

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

    @property
    def lazy(self) -> bool:
        return self._lazy

    def set_lazy(self, lazy: bool) -> None:
        """Switch between eager and lazy reading (see the module docstring).

        Lazy needs the caller to `drain()` before acting on any timer. If the doorbell socket
        cannot be opened the socket stays eager (correct, only dearer).
        """
        if self._closed or lazy == self._lazy:
            return
        self._release_pilot()
        if lazy:
            try:
                doorbell = socket.socket(self.family, socket.SOCK_RAW, VRRP_PROTOCOL)
            except OSError as error:
                log.warning("%s: no doorbell socket, staying eager: %s", self.interface, error)
                return
            try:
                configure(doorbell, self.interface, self.family, self.ifindex)
                program = _priority_zero_filter(self.family == socket.AF_INET)
                code = ctypes.create_string_buffer(program, len(program))
                fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(code))
                doorbell.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            except OSError as error:
                doorbell.close()
                log.warning("%s: no doorbell socket, staying eager: %s", self.interface, error)
                return
            self._doorbell = doorbell
            self._loop.remove_reader(self._sock.fileno())
            self._loop.add_reader(doorbell.fileno(), self._doorbell_rang)
        else:
            self._close_doorbell()
            self._loop.add_reader(self._sock.fileno(), self._readable)
        self._lazy = lazy

    def drain(self) -> int:
        """Handle every datagram waiting in the socket now; returns how many were read."""
        if self._closed:
            return 0
        return self._read(_DRAIN_LIMIT)

    def close(self) -> None:
        if self._closed:
            return
        self._release_pilot()
        self._closed = True
        self._close_doorbell()
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
        # Read what is there now, without starving the loop when a peer floods us.
        self._read(_EAGER_BATCH)

    def _doorbell_rang(self) -> None:
        doorbell = self._doorbell
        if doorbell is None:
            return
        with contextlib.suppress(OSError):
            while doorbell.recv(_RECEIVE_SIZE):
                pass  # only a signal: the main socket holds the same datagrams, in order
        self._read(_DRAIN_LIMIT)

    def _close_doorbell(self) -> None:
        doorbell, self._doorbell = self._doorbell, None
        if doorbell is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(doorbell.fileno())
            doorbell.close()

    def _release_pilot(self) -> None:
        hook = self.pilot_hook
        if hook is not None:
            self.pilot_hook = None
            hook()

    def read_repeats(self, echo: Echo) -> tuple[int, float, tuple[PacketReceived, float] | None]:
        """For the autopilot, from its thread, while it holds the socket (no loop involved).

        Reads the waiting datagrams that repeat `echo` (payload, source, destination, TTL) and
        stops at the first one that does not. Returns how many repeats were read, the arrival
        time of the last (`time.monotonic()` clock, the loop's), and the other packet with its
        arrival time, or None when the socket ran dry first.
        """
        if self.family == socket.AF_INET:
            count, last, other = self._read_repeats_ipv4(echo)
            if other is None:
                return count, last, None
            offset = time.monotonic() - time.time()
            datagram, ancillary = other
            stamp = self._socket_facts(ancillary)
            packet = parse_ipv4_datagram(datagram)
            self._last_datagram, self._last_packet = datagram, packet
            if packet is None:  # not VRRP over IPv4: dropped, as the loop would drop it
                return count, last, None
            return count, last, (packet, _arrival_time(stamp, offset, time.monotonic()))
        count, last = 0, 0.0
        offset = time.monotonic() - time.time()
        while True:
            try:
                packet6, stamp = self._receive_ipv6()
            except (BlockingIOError, InterruptedError):
                return count, last, None
            except OSError as error:
                log.warning("%s: receive failed: %s", self.interface, error)
                return count, last, None
            if packet6 is None:
                continue
            if len(packet6.payload) > 1 and packet6.payload[1] != echo.payload[1]:
                self.foreign_skipped += 1
                continue
            arrived = _arrival_time(stamp, offset, time.monotonic())
            if (packet6.payload, packet6.source, packet6.destination, packet6.ttl) != echo:
                return count, last, (packet6, arrived)
            count += 1
            last = arrived

    def _read_repeats_ipv4(
        self, echo: Echo
    ) -> tuple[int, float, tuple[bytes, list[tuple[int, int, bytes]]] | None]:
        # The autopilot's quick path: compare raw datagrams, parse only the last timestamp.
        prepared = self._prepared_echo
        if prepared is None or prepared[0] != echo:
            payload, source, destination, ttl = echo
            addresses = socket.inet_aton(source) + socket.inet_aton(destination)
            prepared = self._prepared_echo = (echo, addresses)
        (payload, _source, _destination, ttl), addresses = prepared
        vrid = payload[1]
        size = 20 + len(payload)
        recvmsg = self._sock.recvmsg
        count = 0
        stamp_data = b""
        while True:
            try:
                datagram, ancillary, _flags, _address = recvmsg(_RECEIVE_SIZE, _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("%s: receive failed: %s", self.interface, error)
                break
            if (
                len(datagram) == size
                and datagram[0] == 0x45
                and len(ancillary) == 1  # only the timestamp: no drops to report
                and datagram.endswith(payload)
                and datagram.startswith(addresses, 12)
                and datagram[8] == ttl
            ):
                count += 1
                stamp_data = ancillary[0][2]
                continue
            if (
                len(datagram) >= 22
                and datagram[0] == 0x45
                and datagram[9] == VRRP_PROTOCOL
                and datagram[21] != vrid
                and len(ancillary) == 1
            ):
                self.foreign_skipped += 1
                continue
            return count, self._stamp_arrival(stamp_data), (datagram, ancillary)
        return count, self._stamp_arrival(stamp_data), None

    @staticmethod
    def _stamp_arrival(data: bytes) -> float:
        if len(data) < 16:
            return 0.0
        seconds, nanoseconds = _TIMESPEC.unpack_from(data)
        now = time.monotonic()
        return _arrival_time(seconds + nanoseconds / 1e9, now - time.time(), now)

    def _read(self, limit: int) -> int:
        if self.pilot_hook is not None:
            self._release_pilot()
        # Kernel timestamps are wall-clock times; map them onto the loop's monotonic clock.
        loop_now = self._loop.time()
        offset = loop_now - time.time()
        receive = self._receive_ipv4 if self.family == socket.AF_INET else self._receive_ipv6
        count = 0
        while count < limit:
            try:
                packet, stamp = receive()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("%s: receive failed: %s", self.interface, error)
                break
            count += 1
            if packet is None:
                continue
            self._deliver(packet, _arrival_time(stamp, offset, loop_now))
        return count

    def _deliver(self, packet: PacketReceived, arrived: float) -> None:
        if self._on_packet is not None:
            try:
                self._on_packet(packet, arrived)
            except Exception:
                log.exception("%s: packet callback failed", self.interface)
            return
        try:
            self._queue.put_nowait(packet)
        except asyncio.QueueFull:
            log.warning("%s: receive queue full, VRRP packet dropped", self.interface)

    def _socket_facts(self, ancillary: list[tuple[int, int, bytes]]) -> float | None:
        """The receive timestamp (wall clock) from SOL_SOCKET messages; counts kernel drops."""
        stamp: float | None = None
        for level, kind, data in ancillary:
            if level != socket.SOL_SOCKET:
                continue
            if kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack("=qq", data[:16])
                stamp = seconds + nanoseconds / 1e9
            elif kind == SO_RXQ_OVFL and len(data) >= 4:
                (total,) = struct.unpack("=I", data[:4])
                if total > self.kernel_drops:
                    log.warning(
                        "%s: the kernel dropped %d VRRP packet(s): receive buffer full",
                        self.interface,
                        total - self.kernel_drops,
                    )
                    self.kernel_drops = total
        return stamp

    def _receive_ipv4(self) -> tuple[PacketReceived | None, float | None]:
        datagram, ancillary, _flags, _address = self._sock.recvmsg(_RECEIVE_SIZE, _ANCILLARY_SIZE)
        stamp = self._socket_facts(ancillary)
        last = self._last_datagram
        if (
            datagram[0] == 0x45  # no IP options: the VRRP message starts at byte 20
            and len(datagram) == len(last)
            and datagram[20:] == last[20:]
            and datagram[12:20] == last[12:20]  # source and destination
            and datagram[8] == last[8]  # TTL
        ):
            # A Master repeating its advertisement (only the IP identification and header
            # checksum differ): reuse the same immutable packet object.
            return self._last_packet, stamp
        packet = parse_ipv4_datagram(datagram)
        self._last_datagram, self._last_packet = datagram, packet
        return packet, stamp

    def _receive_ipv6(self) -> tuple[PacketReceived | None, float | None]:
        payload, ancillary, _flags, address = self._sock.recvmsg(_RECEIVE_SIZE, _ANCILLARY_SIZE)
        stamp = self._socket_facts(ancillary)
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
            return None, stamp
        source = str(address[0]).split("%", 1)[0]
        packet = PacketReceived(
            source=source, destination=destination, ttl=hop_limit, payload=payload
        )
        return packet, stamp


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


class VrrpSocketPool:
    """One `VrrpSocket` per (interface, family), shared by every instance on that interface.

    `send(interface=, source=, destination=, payload=)` picks (and, the first time, opens) the
    socket for the destination's family; every received packet goes to `sink` with the interface
    and family it arrived on, for the driver to route by VRID. Open sockets up front with
    `await pool.open(interface, family)` so that Backup instances hear advertisements before
    they ever send.
    """

    def __init__(self, sink: PacketSink) -> None:
        self.sink = sink  # sockets opened from now on deliver here
        self._families: dict[str, socket.AddressFamily] = {}
        self._sockets: dict[tuple[str, int], VrrpSocket] = {}

    async def open(self, interface: str, family: socket.AddressFamily | int) -> VrrpSocket:
        return self._socket(interface, socket.AddressFamily(family))

    def send(self, *, interface: str, source: str, destination: str, payload: bytes) -> None:
        self.for_destination(interface, destination).send(source, destination, payload)

    def set_lazy(self, interface: str, family: socket.AddressFamily | int, lazy: bool) -> None:
        """Read the (interface, family) socket lazily or eagerly, if it is open."""
        existing = self._sockets.get((interface, int(family)))
        if existing is not None:
            existing.set_lazy(lazy)

    def drain(self) -> None:
        """Handle every datagram waiting in the lazy sockets (call before acting on a timer).

        A socket the autopilot holds is left to it: its one instance has no timer in the loop.
        """
        for sock in list(self._sockets.values()):
            if sock.lazy and sock.pilot_hook is None:
                sock.drain()

    def get(self, interface: str, family: int) -> VrrpSocket | None:
        """The open socket for (interface, family 4 or 6), if any."""
        key = (interface, int(socket.AF_INET6 if family == 6 else socket.AF_INET))
        return self._sockets.get(key)

    def for_destination(self, interface: str, destination: str) -> VrrpSocket:
        """The socket `send` would use for `destination` on `interface` (opened if needed)."""
        family = self._families.get(destination)
        if family is None:
            version = ipaddress.ip_address(destination).version
            family = self._families[destination] = (
                socket.AF_INET if version == 4 else socket.AF_INET6
            )
        return self._socket(interface, family)

    @property
    def kernel_drops(self) -> int:
        return sum(sock.kernel_drops for sock in self._sockets.values())

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

        deliver = self._deliverer(interface, family)
        opened = VrrpSocket.open_now(interface, family, on_packet=deliver)
        self._sockets[key] = opened
        return opened

    def adopt(self, interface: str, family: int, sock: socket.socket, ifindex: int) -> None:
        """Read and send on `sock`, opened before the loop by `vrrp_raw.open_raw`; what it
        queued meanwhile is read now. A socket already open for (interface, family) wins."""
        key = (interface, int(family))
        if key in self._sockets:
            sock.close()
            return
        self._sockets[key] = VrrpSocket(
            interface=interface, family=socket.AddressFamily(family), sock=sock,
            ifindex=ifindex, on_packet=self._deliverer(interface, family),
        )  # fmt: skip

    def _deliverer(self, interface: str, family: int) -> PacketCallback:
        sink, family_number = self.sink, int(family)

        def deliver(packet: PacketReceived, arrived: float) -> None:
            sink(interface, family_number, packet, arrived)

        return deliver
