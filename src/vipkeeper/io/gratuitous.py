"""Gratuitous ARP (IPv4) and unsolicited Neighbour Advertisements (IPv6) for virtual addresses.

Owns: building the Ethernet frames by hand (RFC 826 / RFC 5227 §2.3 ARP announcement: an ARP
request whose sender and target protocol addresses are both the VIP, broadcast, from the
interface's MAC; RFC 4861 §7.2.6 unsolicited NA: ICMPv6 type 136 to ff02::1 with the Override flag
and a target link-layer address option, hop limit 255) and sending them from an AF_PACKET socket
bound to the VIP's interface, `count` times, optionally spaced by `interval` without blocking the
loop.

Must never: decide when to announce (the core orders `SendGratuitous`), pull in scapy, or touch
addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable

from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.core.vrrp_wire import internet_checksum

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = "ff02::1"  # RFC 4291 §2.7.1
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"  # RFC 2464 §7
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000  # RFC 4861 §4.4
OPTION_TARGET_LINK_LAYER = 2
_MINIMUM_FRAME = 60  # Ethernet minimum without FCS


def build_gratuitous_arp(mac: bytes, address: str) -> bytes:
    """An Ethernet frame carrying an ARP announcement of `address` at `mac`.

    RFC 5227 §2.3: opcode request, sender and target protocol address both the announced
    address, target hardware address zero; sent to the broadcast MAC.
    """
    ip = socket.inet_aton(address)
    ethernet = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + mac + ip + bytes(6) + ip
    return (ethernet + arp).ljust(_MINIMUM_FRAME, b"\x00")


def build_unsolicited_na(mac: bytes, target: str, source: str | None = None) -> bytes:
    """An Ethernet frame carrying an unsolicited Neighbour Advertisement for `target`.

    RFC 4861 §7.2.6: to all-nodes ff02::1, Solicited flag clear, Override flag set, with the
    target link-layer address option; §7.1.2: hop limit 255. The IP source is `source`, by
    default the target itself (an address assigned to the sending interface, as §4.4 asks).
    """
    target_bytes = ipaddress.IPv6Address(target).packed
    source_bytes = ipaddress.IPv6Address(source or target).packed
    destination = ipaddress.IPv6Address(ALL_NODES).packed
    option = struct.pack("!BB", OPTION_TARGET_LINK_LAYER, 1) + mac
    body = struct.pack("!I", NA_FLAG_OVERRIDE) + target_bytes + option
    unchecked = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERT, 0, 0) + body
    checksum = icmpv6_checksum(source_bytes, destination, unchecked)
    icmp = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERT, 0, checksum) + body
    ipv6 = (
        struct.pack("!IHBB", 6 << 28, len(icmp), socket.IPPROTO_ICMPV6, 255)
        + source_bytes
        + destination
    )
    ethernet = ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6)
    return ethernet + ipv6 + icmp


def icmpv6_checksum(source: bytes, destination: bytes, message: bytes) -> int:
    """RFC 4443 §2.3: one's complement sum over the IPv6 pseudo-header (RFC 8200 §8.1) and
    the message with its checksum field zero."""
    pseudo = source + destination + struct.pack("!I3xB", len(message), socket.IPPROTO_ICMPV6)
    return internet_checksum(pseudo + message)


def interface_mac(interface: str) -> bytes:
    """The interface's hardware address, as the kernel reports it for a packet socket."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((interface, 0))
        return bytes(sock.getsockname()[4])


class PacketSockets:
    """One bound AF_PACKET socket per interface, kept open between announcements.

    Closing a packet socket waits for an RCU grace period in the kernel (about 10 ms here),
    and that wait would stall the event loop once per announcement: 200 instances becoming
    Master cost seconds. A socket is reopened when its interface was deleted and created again
    (the index changed).
    """

    def __init__(self) -> None:
        self._sockets: dict[str, tuple[int, socket.socket]] = {}

    def get(self, interface: str) -> tuple[socket.socket, bytes]:
        """The interface's socket and hardware address; OSError if the interface is missing."""
        index = socket.if_nametoindex(interface)
        cached = self._sockets.get(interface)
        if cached is not None and cached[0] != index:
            self.forget(interface)
            cached = None
        if cached is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                sock.setblocking(False)
                sock.bind((interface, 0))
            except BaseException:
                sock.close()
                raise
            cached = self._sockets[interface] = (index, sock)
        sock = cached[1]
        return sock, bytes(sock.getsockname()[4])

    def forget(self, interface: str) -> None:
        cached = self._sockets.pop(interface, None)
        if cached is not None:
            cached[1].close()

    def close(self) -> None:
        for interface in list(self._sockets):
            self.forget(interface)


async def send_gratuitous(
    addresses: Iterable[VirtualAddress],
    count: int,
    *,
    interval: float = 0.0,
    sockets: PacketSockets | None = None,
) -> int:
    """Announce every address on its own interface, `count` rounds, `interval` seconds apart.

    Returns the number of frames sent. An interface that is missing or down is logged and
    skipped; the other interfaces still get their announcements. `sockets` keeps the packet
    sockets open for the next call; without it they are opened and closed here.
    """
    loop = asyncio.get_running_loop()
    sent = 0
    with contextlib.ExitStack() as stack:
        if sockets is None:
            sockets = PacketSockets()
            stack.callback(sockets.close)
        frames = _frames(addresses, sockets)
        for round_number in range(count):
            if round_number and interval > 0:
                await asyncio.sleep(interval)
            for sock, frame, link_address in frames:
                try:
                    await loop.sock_sendto(sock, frame, link_address)
                    sent += 1
                except OSError as error:
                    _not_sent(error, link_address, sockets)
    return sent


Frame = tuple[socket.socket, bytes, tuple[str, int]]


def _frames(addresses: Iterable[VirtualAddress], sockets: PacketSockets) -> list[Frame]:
    """One frame per address, with the packet socket and link address it goes out on; an
    interface that is missing is logged and skipped."""
    by_interface: dict[str, list[VirtualAddress]] = {}
    for vip in addresses:
        by_interface.setdefault(vip.dev, []).append(vip)
    frames: list[Frame] = []
    for interface, vips in by_interface.items():
        try:
            sock, mac = sockets.get(interface)
        except OSError as error:
            log.warning("%s: cannot send gratuitous announcements: %s", interface, error)
            continue
        for vip in vips:
            frame, ethertype = _frame_for(mac, vip.address)
            # The link-layer address names the ethertype, so the kernel tags the frame right
            # although the socket (protocol 0) receives nothing.
            frames.append((sock, frame, (interface, ethertype)))
    return frames


def _not_sent(error: OSError, link_address: tuple[str, int], sockets: PacketSockets) -> None:
    log.warning("gratuitous announcement not sent: %s", error)
    if error.errno in (errno.ENODEV, errno.ENXIO):
        sockets.forget(link_address[0])


class GratuitousSender:
    """The driver's gratuitous sender: `await announce(addresses, count)`.

    `interval` is the pause between rounds (keepalived's garp_interval / na_interval; 0: the
    rounds go out back to back). Its packet sockets stay open until `close()`.
    """

    def __init__(self, *, interval: float = 0.0) -> None:
        self.interval = interval
        self._sockets = PacketSockets()

    async def announce(self, addresses: tuple[VirtualAddress, ...], count: int) -> None:
        await send_gratuitous(addresses, count, interval=self.interval, sockets=self._sockets)

    def announce_now(self, addresses: tuple[VirtualAddress, ...], count: int) -> bool:
        """`announce` without waiting, for a takeover's first effects: False (nothing sent)
        when the rounds must be spaced by an interval; `announce` does those."""
        if count > 1 and self.interval > 0:
            return False
        frames = _frames(addresses, self._sockets)
        for _round in range(count):
            for sock, frame, link_address in frames:
                try:
                    sock.sendto(frame, link_address)
                except OSError as error:  # a full socket buffer too: the next round follows
                    _not_sent(error, link_address, self._sockets)
        return True

    def prepare(self, interfaces: Iterable[str]) -> None:
        """Open the packet sockets ahead of the first takeover (a missing interface is fine)."""
        for interface in interfaces:
            with contextlib.suppress(OSError):
                self._sockets.get(interface)

    def close(self) -> None:
        self._sockets.close()


def _frame_for(mac: bytes, address: str) -> tuple[bytes, int]:
    if ipaddress.ip_address(address).version == 4:
        return build_gratuitous_arp(mac, address), ETH_P_ARP
    return build_unsolicited_na(mac, address), ETH_P_IPV6
