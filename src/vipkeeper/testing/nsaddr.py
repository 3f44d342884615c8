"""Reading a namespace's IPv4 addresses from the test process, without a fork per look.

What this owns: one rtnetlink socket per network namespace, opened by a short-lived thread that
enters the namespace (setns affects only the calling thread, and a socket stays in the namespace
it was created in), and an RTM_GETADDR dump parsed with `struct`. A look costs a syscall pair
instead of an `ip netns exec` process, so a checker can watch several routers every 50 ms on a
busy machine.

It never changes anything in a namespace: it only asks for addresses.

    reader = AddressReader("vkabc123-r1")
    reader.addresses()          -> {"10.1.0.1/24", "10.1.0.100/24", "127.0.0.1/8"}
    reader.close()
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading

_CLONE_NEWNET = 0x40000000
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_NLMSGHDR = struct.Struct("=LHHLL")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")

_libc = ctypes.CDLL(None, use_errno=True)


def _align(length: int) -> int:
    return (length + 3) & ~3


def netlink_socket_in(ns: str) -> socket.socket:
    """A NETLINK_ROUTE socket living in the named namespace (/run/netns/NS)."""
    made: dict[str, object] = {}

    def inside() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made["socket"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        except BaseException as exc:
            made["error"] = exc

    thread = threading.Thread(target=inside, name=f"setns-{ns}")
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    sock = made["socket"]
    assert isinstance(sock, socket.socket)
    return sock


class AddressReader:
    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._sock = netlink_socket_in(ns)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def addresses(self) -> set[str]:
        """Every IPv4 address in the namespace as "a.b.c.d/len"."""
        self._seq += 1
        body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, self._seq, 0
        )
        self._sock.send(header + body)
        found: set[str] = set()
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError(f"{self.ns}: malformed netlink answer")
                if seq == self._seq:
                    if kind == _NLMSG_DONE:
                        return found
                    if kind == _NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                        if code:
                            raise OSError(-code, f"{self.ns}: address dump failed")
                    elif kind == _RTM_NEWADDR:
                        found.update(self._parse(data, offset + _NLMSGHDR.size, offset + length))
                offset += _align(length)

    @staticmethod
    def _parse(data: bytes, start: int, end: int) -> set[str]:
        family, prefixlen, _flags, _scope, _index = _IFADDRMSG.unpack_from(data, start)
        if family != socket.AF_INET:
            return set()
        offset = start + _IFADDRMSG.size
        local = address = None
        while offset + _RTATTR.size <= end:
            length, kind = _RTATTR.unpack_from(data, offset)
            if length < _RTATTR.size:
                break
            value = data[offset + _RTATTR.size : offset + length]
            if kind == _IFA_LOCAL and len(value) == 4:
                local = socket.inet_ntoa(value)
            elif kind == _IFA_ADDRESS and len(value) == 4:
                address = socket.inet_ntoa(value)
            offset += _align(length)
        chosen = local or address
        return {f"{chosen}/{prefixlen}"} if chosen else set()
