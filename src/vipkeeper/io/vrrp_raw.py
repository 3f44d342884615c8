"""Opening a raw IP protocol 112 socket for VRRP on one interface, with no event loop.

Owns: the socket's options (bound to the device, TTL / hop limit 255 on everything sent,
membership of 224.0.0.18 / ff02::12 on that interface only, no multicast loopback, kernel receive
timestamps, drop counts, a receive buffer for thousands of advertisements). `vipkeeper.launch`
opens the instances' sockets here before asyncio is loaded, so that they queue what arrives while
the rest of the daemon loads; `vipkeeper.io.vrrp_socket` reads and sends on them.

Must never: read or send (that is `vrrp_socket`'s), or import asyncio.
"""

from __future__ import annotations

import socket
import struct

from vipkeeper.core.vrrp_numbers import MULTICAST_V4, MULTICAST_V6, VRRP_PROTOCOL, VRRP_TTL

# Not exported by Python's socket module on every version (linux/in.h, linux/in6.h,
# asm-generic/socket.h).
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
_IPV6_MULTICAST_ALL = 29
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# A lazy socket holds every advertisement between two drains; ask for room for thousands.
RECEIVE_BUFFER = 4 * 1024 * 1024


def socket_family(family: int) -> socket.AddressFamily:
    """The socket family of a VRRP instance's address family number (4 or 6)."""
    return socket.AF_INET6 if family == 6 else socket.AF_INET


def open_raw(interface: str, family: socket.AddressFamily | int) -> tuple[socket.socket, int]:
    """A configured, non-blocking VRRP socket on `interface` and the interface's index; raises
    OSError (e.g. ENODEV) if that is impossible, ValueError for a family VRRP does not use."""
    family = socket.AddressFamily(family)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"VRRP runs over AF_INET or AF_INET6, not {family!r}")
    ifindex = socket.if_nametoindex(interface)
    sock = socket.socket(family, socket.SOCK_RAW, VRRP_PROTOCOL)
    try:
        configure(sock, interface, family, ifindex)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except PermissionError:  # without CAP_NET_ADMIN: as much as rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    except BaseException:
        sock.close()
        raise
    return sock, ifindex


def configure(
    sock: socket.socket, interface: str, family: socket.AddressFamily, ifindex: int
) -> None:
    """Bind `sock` to the interface, set what every VRRP message is sent with, and join the
    VRRP group there."""
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    if family == socket.AF_INET:
        _configure_ipv4(sock, ifindex)
    else:
        _configure_ipv6(sock, ifindex)


def _configure_ipv4(sock: socket.socket, ifindex: int) -> None:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    # Only the groups this socket joined, not every group some other socket joined.
    sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
    mreqn = struct.pack("=4s4si", socket.inet_aton(MULTICAST_V4), bytes(4), ifindex)
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
    mreq = struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, MULTICAST_V6), ifindex)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
