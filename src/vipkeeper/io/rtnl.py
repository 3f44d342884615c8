"""The rtnetlink messages the election path needs, encoded and decoded here: addresses (add,
delete, dump), links (dump, look-up by name) and the link and address notifications.

pyroute2 speaks every netlink protocol and loads accordingly: importing its rtnetlink client
costs a daemon about as much CPU as everything else it imports before it is in the election.
These few messages are small fixed structures (linux/netlink.h, linux/rtnetlink.h,
linux/if_addr.h, linux/if_link.h), so `addresses` and `links` use this module; pyroute2 stays
for what needs more of it (macvlan interfaces, IPVS), loaded when those are configured.

`Rtnl` is one NETLINK_ROUTE socket, non-blocking, read through the running event loop.
`request()` sends one message and collects the answers to it (a dump's messages up to
NLMSG_DONE, or the acknowledgement); `send()` and `answer_now()` do the same without waiting,
for the takeover's first VIP. Answers to other requests still queued on the socket are dropped.
`request_now()` is `request()` for the start before the event loop exists (`vipkeeper.launch`):
it waits in poll(2), for at most REQUEST_TIMEOUT. `notifications()` reads a socket bound to
multicast groups. asyncio is imported only when a request waits through the loop.

Must never: decide anything (the adapters' callers do), or block the event loop: every read
there is non-blocking.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    import asyncio

# linux/netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100

# linux/if_addr.h (IFA_*) and linux/if_link.h (IFLA_*)
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_FLAGS = 8
IFLA_IFNAME = 3

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # length, type
_U32 = struct.Struct("=I")
_ERROR = struct.Struct("=i")
RECEIVE_SIZE = 1 << 16  # a dump's datagram is at most a few pages
# The socket's receive buffer: a burst of notifications (hundreds of VIPs added at a takeover)
# must fit, or the link monitor loses them (ENOBUFS) and resynchronises.
RECEIVE_BUFFER = 1 << 20
REQUEST_TIMEOUT = 5.0  # seconds request_now waits for the kernel's answer


class NetlinkError(Exception):
    """rtnetlink refused a request; `code` is the errno it answered."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message or os.strerror(code))
        self.code = code


class Message:
    """One rtnetlink message: its type, flags, sequence number and payload."""

    __slots__ = ("body", "flags", "kind", "sequence")

    def __init__(self, kind: int, flags: int, sequence: int, body: bytes) -> None:
        self.kind = kind
        self.flags = flags
        self.sequence = sequence
        self.body = body


def messages(data: bytes) -> Iterator[Message]:
    """The messages of one datagram; a truncated or malformed tail ends it."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            return
        yield Message(kind, flags, sequence, data[offset + _HEADER.size : offset + length])
        offset += (length + 3) & ~3


def error_code(message: Message) -> int:
    """The errno an NLMSG_ERROR (or a dump's NLMSG_DONE) carries; 0 for success."""
    if len(message.body) < _ERROR.size:
        return 0
    return -int(_ERROR.unpack_from(message.body)[0])


def acknowledgement(data: bytes, sequence: int) -> int | None:
    """The errno (0: success) the NLMSG_ERROR answering request `sequence` in datagram `data`
    carries; None if `data` holds no answer to it."""
    for message in messages(data):
        if message.kind == NLMSG_ERROR and message.sequence == sequence:
            return error_code(message)
    return None


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The rtattrs from `offset` on, by type (the first of a repeated type)."""
    found: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            break
        found.setdefault(kind & 0x3FFF, data[offset + _RTATTR.size : offset + length])
        offset += (length + 3) & ~3
    return found


def attribute(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + bytes(-length % 4)


def text(value: bytes) -> str:
    """A NUL-terminated string attribute."""
    return value.split(b"\0", 1)[0].decode()


def encode(kind: int, flags: int, sequence: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body


class Address:
    """An RTM_NEWADDR / RTM_DELADDR: ifaddrmsg and its attributes."""

    __slots__ = ("attrs", "family", "flags", "index", "prefixlen", "scope")

    def __init__(self, body: bytes) -> None:
        self.family, self.prefixlen, self.flags, self.scope, self.index = _IFADDRMSG.unpack_from(
            body
        )
        self.attrs = attributes(body, _IFADDRMSG.size)

    def address(self, kind: int = IFA_ADDRESS) -> str | None:
        value = self.attrs.get(kind)
        return None if value is None else socket.inet_ntop(self.family, value)

    @property
    def label(self) -> str | None:
        value = self.attrs.get(IFA_LABEL)
        return None if value is None else text(value)

    @property
    def all_flags(self) -> int:
        """The IFA_F_* bits: ifaddrmsg's eight, and IFA_FLAGS's 32 where the kernel sends it."""
        extended = self.attrs.get(IFA_FLAGS)
        return int(self.flags) | (int(_U32.unpack(extended)[0]) if extended is not None else 0)


class Link:
    """An RTM_NEWLINK / RTM_DELLINK: ifinfomsg and the interface's name."""

    __slots__ = ("flags", "index", "name")

    def __init__(self, body: bytes) -> None:
        _family, _type, self.index, self.flags, _change = _IFINFOMSG.unpack_from(body)
        name = attributes(body, _IFINFOMSG.size).get(IFLA_IFNAME)
        self.name = None if name is None else text(name)


def address_body(
    *,
    family: int,
    index: int,
    prefixlen: int = 0,
    scope: int = 0,
    address: str | None = None,
    local: bool = False,
    label: str | None = None,
    extended_flags: int | None = None,
) -> bytes:
    """An ifaddrmsg with IFA_ADDRESS (and IFA_LOCAL, the same address, when `local`), IFA_LABEL
    and IFA_FLAGS as given."""
    body = _IFADDRMSG.pack(family, prefixlen, 0, scope, index)
    if address is not None:
        packed = socket.inet_pton(family, address)
        body += attribute(IFA_ADDRESS, packed)
        if label is not None:
            body += attribute(IFA_LABEL, label.encode() + b"\0")
        if local:
            body += attribute(IFA_LOCAL, packed)
    if extended_flags is not None:
        body += attribute(IFA_FLAGS, _U32.pack(extended_flags))
    return body


def link_body(name: str | None = None) -> bytes:
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    if name is not None:
        body += attribute(IFLA_IFNAME, name.encode() + b"\0")
    return body


class Rtnl:
    """One rtnetlink socket (bound to `groups` for notifications); opened at first use."""

    def __init__(self, groups: int = 0) -> None:
        self._groups = groups
        self._socket: socket.socket | None = None
        self._sequence = 0

    def socket(self) -> socket.socket:
        """The socket, opened (and subscribed to the groups) at the first call."""
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                sock.bind((0, self._groups))
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def send(self, kind: int, flags: int, body: bytes) -> int:
        """Send one request (NLM_F_REQUEST is added); its sequence number."""
        self._sequence = sequence = (self._sequence % 0x7FFFFFFF) + 1
        self.socket().send(encode(kind, flags | NLM_F_REQUEST, sequence, body))
        return sequence

    def answer_now(self, sequence: int) -> int | None:
        """The errno rtnetlink acknowledged request `sequence` with (0: done), if the answer is
        queued already; None if it is not. Everything read before it is dropped."""
        while True:
            try:
                data = self.socket().recv(RECEIVE_SIZE)
            except BlockingIOError:
                return None
            code = acknowledgement(data, sequence)
            if code is not None:
                return code

    async def request(self, kind: int, flags: int, body: bytes) -> list[Message]:
        """Send one request and return what answers it: a dump's messages (with NLM_F_DUMP),
        or those before the acknowledgement (NLM_F_ACK is added otherwise). Raises
        `NetlinkError` when the kernel refuses it."""
        answers = _Answers(self, kind, flags, body)
        while True:
            done = answers.read(await self.receive())
            if done is not None:
                return done

    def request_now(self, kind: int, flags: int, body: bytes) -> list[Message]:
        """`request` without an event loop: waits for the answers in poll(2). Raises
        `NetlinkError` when the kernel refuses it, TimeoutError after REQUEST_TIMEOUT."""
        answers = _Answers(self, kind, flags, body)
        deadline = time.monotonic() + REQUEST_TIMEOUT
        poller = select.poll()
        poller.register(self.socket().fileno(), select.POLLIN)
        while True:
            try:
                data = self.socket().recv(RECEIVE_SIZE)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise TimeoutError(
                        f"rtnetlink did not answer within {REQUEST_TIMEOUT:g} s"
                    ) from None
                continue
            done = answers.read(data)
            if done is not None:
                return done

    async def receive(self) -> bytes:
        """The next datagram, waiting for it through the event loop."""
        while True:
            try:
                return self.socket().recv(RECEIVE_SIZE)
            except BlockingIOError:
                await self.readable()

    async def readable(self) -> None:
        """Wait until the socket has something to read."""
        import asyncio  # not before the loop: the start reads without it (request_now)

        fd = self.socket().fileno()
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(fd, _set_once, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


class _Answers:
    """The answers to one request, collected datagram by datagram."""

    def __init__(self, rtnl: Rtnl, kind: int, flags: int, body: bytes) -> None:
        self._dump = flags & NLM_F_DUMP == NLM_F_DUMP
        self._sequence = rtnl.send(kind, flags if self._dump else flags | NLM_F_ACK, body)
        self._answers: list[Message] = []

    def read(self, data: bytes) -> list[Message] | None:
        """Take one datagram; the answers once the request is done, else None. Raises
        `NetlinkError` when the kernel refused it."""
        for message in messages(data):
            if message.sequence != self._sequence:
                continue  # the late answer to an earlier request
            if message.kind == NLMSG_ERROR or (self._dump and message.kind == NLMSG_DONE):
                code = error_code(message)
                if code:
                    raise NetlinkError(code)
                return self._answers
            self._answers.append(message)
        return None


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def links(rtnl: Rtnl) -> list[Link]:
    """Every interface of the socket's network namespace."""
    return [
        Link(m.body) for m in await rtnl.request(RTM_GETLINK, NLM_F_DUMP, link_body())
        if m.kind == RTM_NEWLINK
    ]  # fmt: skip


async def link_index(rtnl: Rtnl, name: str) -> int | None:
    """The index of the interface `name`; None if there is none."""
    try:
        answers = await rtnl.request(RTM_GETLINK, 0, link_body(name))
    except NetlinkError as error:
        if error.code == errno.ENODEV:
            return None
        raise
    for message in answers:
        if message.kind == RTM_NEWLINK:
            return int(Link(message.body).index)
    return None
