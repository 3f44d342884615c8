"""asyncio health checkers (HTTP_GET, TCP_CHECK, MISC_CHECK) and the scheduler that drives them.

Owns: the sockets of TCP_CHECK and HTTP_GET, the MISC_CHECK call into the project's script
runner, and `HealthScheduler`, which runs the `RunCheck` orders of a `core.health.HealthMonitor`
on one asyncio loop and feeds every result back with `loop.time()`.
Must never: decide whether a server is up (the core does), run a subprocess itself (MISC_CHECK
goes through an injected runner, normally `vipkeeper.io.scripts.ScriptRunner`), block the loop,
or let one check wait for another: every check is bounded by its own `connect_timeout` (or
`misc_timeout`), so a hanging real server costs only its own timeout.

TCP_CHECK and HTTP_GET are the hot path (a thousand real servers at delay_loop 1 s make a
thousand checks a second), so they run without a task or a coroutine: `start` opens a
non-blocking socket, a `SocketPoller` (one epoll set that the loop watches as a single fd)
reports when it is connected and when the answer arrives, one `call_at` bounds it, and a callback
takes the result. Every way out (result, failure, deadline, `cancel`) goes through one `_release`
that unregisters the socket, cancels the deadline and closes the socket. `run` awaits the same
path, for callers that want a coroutine.

Protocol facts are from keepalived.conf(5): HTTP_GET checks every `url` (status default 200-299,
`digest` is the MD5 of the body in hex), Host is the virtualhost or else the server address;
TCP_CHECK succeeds when a connection is established within connect_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import ipaddress
import logging
import os
import select
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vipkeeper.core.health import (
    CheckerId,
    CheckFailed,
    CheckSucceeded,
    HealthEffect,
    HealthEvent,
    HealthMonitor,
    MiscResult,
    RunCheck,
)

if TYPE_CHECKING:
    from vipkeeper.io.scripts import ScriptRunner

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
# A health check reads at most this much of a response body before declaring it failed.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_RECV_SIZE = 65536
_STREAM_NONBLOCKING = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_TCP_ESTABLISHED = 1  # tcpi_state, the first byte of struct tcp_info (linux/tcp.h)

ResultCallback = Callable[[HealthEvent], None]


class Checker(Protocol):
    """One configured check of one real server."""

    async def run(self, checker: CheckerId) -> HealthEvent: ...


class CheckInFlight(Protocol):
    """A check started with `start`; `cancel` is idempotent and a no-op once it has finished."""

    def cancel(self) -> None: ...


class CallbackChecker(Checker, Protocol):
    """A checker that also runs without a task; `HealthScheduler` uses `start` when present."""

    def start(
        self, checker: CheckerId, done: ResultCallback, poller: SocketPoller
    ) -> CheckInFlight:
        """Start one check on the poller's loop, its sockets watched by `poller`.

        `done` receives the result exactly once, always from a later loop callback (never from
        inside `start`), unless the check is cancelled first: then it is never called.
        """
        ...


MiscRunner = Callable[[Sequence[str], float], Awaitable[int | None]]
"""Runs argv, killing it after `timeout` seconds; returns its exit status, None if it had none."""


def misc_runner(runner: ScriptRunner) -> MiscRunner:
    """A MISC_CHECK runner on top of the project's single script runner."""

    async def run(argv: Sequence[str], timeout: float) -> int | None:
        result = await runner.run(tuple(argv), timeout=timeout)
        if result.timed_out or result.exit_code is None or result.exit_code < 0:
            return None
        return result.exit_code

    return run


class CheckError(Exception):
    """A check that did not pass; the message is the reason reported to the core."""


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within connect_timeout {timeout:g}s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, CheckError):
        return str(error)
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return repr(error)


def _target(address: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """Address family and socket address of a real server.

    Only IP literals (the configuration allows nothing else): a name would make every connect
    resolve it, blocking the loop.
    """
    try:
        version = ipaddress.ip_address(address).version  # an IPv6 scope ("%eth0") is fine
    except ValueError:
        raise ValueError(f"health check address {address!r} is not an IP address") from None
    return (socket.AF_INET6 if version == 6 else socket.AF_INET), (address, port)


async def _await_result(checker: CallbackChecker, checker_id: CheckerId) -> HealthEvent:
    """Run one callback check as a coroutine; cancelling the caller cancels the check."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[HealthEvent] = loop.create_future()

    def settle(event: HealthEvent) -> None:
        if not result.done():  # the awaiting task may have been cancelled in the meantime
            result.set_result(event)

    poller = SocketPoller(loop)
    try:
        in_flight = checker.start(checker_id, settle, poller)
        try:
            return await result
        finally:
            in_flight.cancel()
    finally:
        poller.close()


# --- sockets in flight ----------------------------------------------------------------------------


class SocketPoller:
    """One epoll set for the health-check sockets of a loop, which the loop watches as one fd.

    Registering each socket with the loop instead costs several times more CPU (asyncio's
    selector bookkeeping, a Handle per registration and one per event), which at a thousand
    checks a second was the largest share of the checkers' own time. Here a registration is one
    epoll_ctl and a ready socket one method call. The owner closes the poller after cancelling
    the checks that use it (`HealthScheduler.stop`, `run`).
    """

    __slots__ = ("_epoll", "_probes", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._probes: dict[int, _Probe] = {}
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    def close(self) -> None:
        if self._epoll.closed:
            return
        self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._probes.clear()

    def watch(self, fd: int, probe: _Probe, events: int) -> None:
        self._epoll.register(fd, events)
        self._probes[fd] = probe

    def change(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def forget(self, fd: int) -> None:
        """Stop watching `fd`; call before closing it (a closed fd may come back as another)."""
        if self._probes.pop(fd, None) is not None and not self._epoll.closed:
            self._epoll.unregister(fd)

    def _on_ready(self) -> None:
        probes = self._probes
        # Look the probes up before running any: one that finishes may close a socket whose fd
        # a new check then reuses, and that check must not see the old socket's event.
        ready = [(probes.get(fd), events) for fd, events in self._epoll.poll(0)]
        for probe, events in ready:
            if probe is None:
                continue
            try:
                probe.on_ready(events)
            except Exception as error:  # only a result callback can raise: report, go on
                self.loop.call_exception_handler(
                    {"message": "health check result callback failed", "exception": error}
                )


_IDLE = 0
_READING = select.EPOLLIN
_WRITING = select.EPOLLOUT


def _established(sock: socket.socket) -> bool:
    """Whether the handshake is done already, as it is when a non-blocking connect returns to a
    server on this host or behind a veth pair (the kernel answers the SYN synchronously)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_ESTABLISHED


class _Probe:
    """One TCP_CHECK or HTTP_GET check in flight: its socket, its poller registration, its deadline.

    The socket is registered for one kind of readiness at a time (`_watching`), and the current
    connection has one deadline timer. `_release` undoes all of it and closes the socket; every
    way out calls it before the result is delivered. A failed check never raises out of a
    callback: the failure becomes the result, and an unexpected exception becomes
    "checker error: ..." (logged), as for a checker that raises under `HealthScheduler`.
    """

    __slots__ = ("_checker", "_done", "_fd", "_pending", "_poller", "_sock", "_timer", "_watching")

    def __init__(self, poller: SocketPoller, checker: CheckerId, done: ResultCallback) -> None:
        self._poller = poller
        self._checker = checker
        self._done: ResultCallback | None = done  # None once delivered or cancelled
        self._sock: socket.socket | None = None
        self._fd = -1
        self._watching = _IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._pending: asyncio.Handle | None = None  # a result found inside `start`, queued

    def cancel(self) -> None:
        self._done = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._release()

    # -- what the kinds of check define --

    def _reason(self, error: BaseException) -> str:
        raise NotImplementedError

    def _connected(self) -> HealthEvent | None:
        """The socket is writable: the connection is up or has failed (then this raises)."""
        raise NotImplementedError

    def _received(self) -> HealthEvent | None:
        raise NotImplementedError

    # -- the connection --

    def _connect(
        self, family: socket.AddressFamily, address: tuple[str, int]
    ) -> socket.socket | None:
        """Start a non-blocking connection; None if that failed (the failure is queued)."""
        try:
            sock = socket.socket(family, _STREAM_NONBLOCKING)
            self._sock = sock
            self._fd = sock.fileno()
            code = sock.connect_ex(address)
            if code and code != errno.EINPROGRESS:
                raise OSError(code, os.strerror(code))
        except Exception as error:
            self._queue(self._failure(error))
            return None
        return sock

    def _arm_deadline(self, timeout: float) -> None:
        loop = self._poller.loop
        self._timer = loop.call_at(loop.time() + timeout, self._on_timeout)

    def _watch(self, events: int) -> None:
        if self._watching == events:
            return
        if self._watching == _IDLE:
            self._poller.watch(self._fd, self, events)
        else:
            self._poller.change(self._fd, events)
        self._watching = events

    def _release(self) -> None:
        if self._watching != _IDLE:
            self._watching = _IDLE
            self._poller.forget(self._fd)
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        sock = self._sock
        if sock is not None:
            self._sock = None
            sock.close()

    # -- callbacks --

    def on_ready(self, events: int) -> None:
        """The poller saw the socket ready (or in error, which wakes either kind of watch)."""
        if self._watching == _WRITING:
            handler = self._connected
        elif self._watching == _READING:
            handler = self._received
        else:
            return  # finished or cancelled since the poll
        try:
            event = handler()
        except (BlockingIOError, InterruptedError):
            return  # not ready after all: wait for the next report
        except Exception as error:
            event = self._failure(error)
        if event is not None:
            self._finish(event)

    def _on_timeout(self) -> None:
        self._timer = None
        self._finish(self._failure(TimeoutError()))

    def _deliver(self, event: HealthEvent) -> None:
        self._pending = None
        self._finish(event)

    # -- the result --

    def _failure(self, error: BaseException) -> CheckFailed:
        if isinstance(error, OSError | CheckError):
            reason = self._reason(error)
        else:  # a bug must not stall the server's schedule
            log.error("checker %s raised", self._checker, exc_info=error)
            reason = f"checker error: {error!r}"
        return CheckFailed(checker=self._checker, reason=reason)

    def _queue(self, event: HealthEvent) -> None:
        """Release now, deliver from the loop: `start` must never call `done` itself."""
        self._release()
        self._pending = self._poller.loop.call_soon(self._deliver, event)

    def _finish(self, event: HealthEvent) -> None:
        self._release()
        done = self._done
        if done is not None:
            self._done = None
            done(event)  # outside every try: a bug in the receiver surfaces in the loop's log


class _TcpProbe(_Probe):
    __slots__ = ("_check",)

    def __init__(
        self, check: TcpCheck, poller: SocketPoller, checker: CheckerId, done: ResultCallback
    ) -> None:
        super().__init__(poller, checker, done)
        self._check = check
        family, address = check._target
        sock = self._connect(family, address)
        if sock is None:
            return
        try:
            if _established(sock):
                self._queue(CheckSucceeded(checker=checker))
                return
            self._watch(_WRITING)
            self._arm_deadline(check.connect_timeout)
        except Exception as error:
            self._queue(self._failure(error))

    def _reason(self, error: BaseException) -> str:
        return _describe(error, self._check.connect_timeout)

    def _connected(self) -> HealthEvent:
        assert self._sock is not None
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
        return CheckSucceeded(checker=self._checker)


class _HttpProbe(_Probe):
    """Fetches every url in turn, each over its own connection bounded by connect_timeout."""

    __slots__ = ("_check", "_index", "_response", "_unsent")

    def __init__(
        self, check: HttpGetCheck, poller: SocketPoller, checker: CheckerId, done: ResultCallback
    ) -> None:
        super().__init__(poller, checker, done)
        self._check = check
        self._index = 0
        self._open()

    def _open(self) -> None:
        check = self._check
        self._unsent = check._requests[self._index]
        self._response = _ResponseReader(need_body=check.urls[self._index].digest is not None)
        family, address = check._target
        if self._connect(family, address) is None:
            return
        self._arm_deadline(check.connect_timeout)
        try:
            # Most often the handshake is done already (a local or veth-attached server) and
            # the request goes at once; if not, the send says so and the poller reports when.
            self._send()
        except Exception as error:
            self._queue(self._failure(error))

    def _reason(self, error: BaseException) -> str:
        path = self._check.urls[self._index].path
        return f"GET {path}: {_describe(error, self._check.connect_timeout)}"

    def _send(self) -> None:
        assert self._sock is not None
        try:
            # Before the handshake is done this fails with EAGAIN (nothing is queued); after a
            # failed connect it raises the connect's error (refused, unreachable ...).
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(self._unsent):
            self._unsent = self._unsent[sent:]
            self._watch(_WRITING)
        else:
            self._watch(_READING)

    def _connected(self) -> None:
        self._send()

    def _received(self) -> HealthEvent | None:
        assert self._sock is not None
        response = self._response
        if not response.feed(self._sock.recv(_RECV_SIZE)):
            return None
        check = self._check
        _verify(check.urls[self._index], response)
        self._index += 1
        if self._index == len(check.urls):
            return CheckSucceeded(checker=self._checker)
        self._release()
        self._open()
        return None


# --- the checks -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TcpCheck:
    """TCP_CHECK: the server accepts a connection within `connect_timeout`."""

    address: str  # connect_ip, or the real server's address
    port: int  # connect_port, or the real server's port
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    _target: tuple[socket.AddressFamily, tuple[str, int]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_target", _target(self.address, self.port))

    def start(
        self, checker: CheckerId, done: ResultCallback, poller: SocketPoller
    ) -> CheckInFlight:
        return _TcpProbe(self, poller, checker, done)

    async def run(self, checker: CheckerId) -> HealthEvent:
        return await _await_result(self, checker)


@dataclass(frozen=True, kw_only=True)
class UrlCheck:
    """One `url { }` block of HTTP_GET."""

    path: str = "/"
    status_codes: frozenset[int] | None = None  # None: keepalived's default, any of 200-299
    digest: str | None = None  # MD5 of the body, hex
    virtualhost: str | None = None  # overrides the checker's / real server's virtualhost

    def status_ok(self, status: int) -> bool:
        if self.status_codes is None:
            return 200 <= status <= 299
        return status in self.status_codes


@dataclass(frozen=True, kw_only=True)
class HttpGetCheck:
    """HTTP_GET: every url answers with an accepted status (and body digest, if configured)."""

    address: str
    port: int
    urls: tuple[UrlCheck, ...] = (UrlCheck(),)
    virtualhost: str | None = None
    http_protocol: str = "1.0"  # "1.0", "1.0C" (1.0 with Connection: close) or "1.1"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    _target: tuple[socket.AddressFamily, tuple[str, int]] = field(
        init=False, repr=False, compare=False
    )
    _requests: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_target", _target(self.address, self.port))
        # The requests never change: build their bytes once, not once per check.
        object.__setattr__(self, "_requests", tuple(self.request(url) for url in self.urls))

    def request(self, url: UrlCheck) -> bytes:
        host = url.virtualhost or self.virtualhost
        if host is None:
            host = f"[{self.address}]" if ":" in self.address else self.address
            if self.port != 80:
                host = f"{host}:{self.port}"
        version = "1.1" if self.http_protocol == "1.1" else "1.0"
        lines = [f"GET {url.path} HTTP/{version}", f"Host: {host}", "User-Agent: vipkeeper"]
        if self.http_protocol in ("1.0C", "1.1"):
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def start(
        self, checker: CheckerId, done: ResultCallback, poller: SocketPoller
    ) -> CheckInFlight:
        return _HttpProbe(self, poller, checker, done)

    async def run(self, checker: CheckerId) -> HealthEvent:
        return await _await_result(self, checker)


def _verify(url: UrlCheck, response: _ResponseReader) -> None:
    if not url.status_ok(response.status):
        raise CheckError(f"status {response.status}")
    if url.digest is not None:
        assert response.body is not None
        digest = hashlib.md5(response.body, usedforsecurity=False).hexdigest()
        if digest != url.digest.lower():
            raise CheckError(f"digest {digest} differs from {url.digest.lower()}")


# --- HTTP/1.x responses, parsed as they arrive ----------------------------------------------------


class _ResponseReader:
    """One HTTP/1.x response, fed with what recv returned, however it was split (sans-I/O).

    Without `need_body` the response is complete at the end of its head (only the status
    counts); with it, the body is read by Content-Length, chunked coding or up to the close
    (RFC 9112 §6.3), at most MAX_RESPONSE_BYTES.
    """

    __slots__ = ("_body", "_chunk_at", "_chunked", "_expected", "_head", "_need_body", "body",
                 "status")  # fmt: skip

    def __init__(self, *, need_body: bool) -> None:
        self._need_body = need_body
        self._head: bytearray | None = None  # a head that came in more than one piece
        self._body: bytearray | None = None  # the raw body, once the head is complete
        self._chunked = False
        self._expected: int | None = None  # Content-Length
        self._chunk_at = 0  # where the next chunk-size line starts in the raw body
        self.status = 0
        self.body: bytes | None = None  # the decoded body, when needed and complete

    def feed(self, data: bytes) -> bool:
        """Take the next bytes (b"": the server closed); True once the response is complete."""
        if self._body is not None:
            return self._feed_body(data)
        if not data:
            raise CheckError("connection closed before the response headers")
        head: bytes | bytearray
        if self._head is None:
            head, search_from = data, 0
        else:
            head = self._head
            search_from = max(0, len(head) - 3)  # the blank line may straddle two pieces
            head += data
        end = head.find(b"\r\n\r\n", search_from)
        if end < 0:
            if len(head) > MAX_RESPONSE_BYTES:
                raise CheckError("response headers too large")
            if self._head is None:
                self._head = bytearray(data)
            return False
        self.status = _status(head, end)
        if not self._need_body:
            return True
        self._read_framing(head, end)
        self._body = bytearray(memoryview(head)[end + 4 :])
        if len(self._body) > MAX_RESPONSE_BYTES:
            raise CheckError("response body too large")
        return self._body_complete()

    def _read_framing(self, head: bytes | bytearray, end: int) -> None:
        transfer_encoding = b""
        length: bytes | None = None
        for line in bytes(head[:end]).split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            name = name.strip().lower()
            if name == b"transfer-encoding":
                transfer_encoding = value.strip()
            elif name == b"content-length":
                length = value.strip()
        self._chunked = b"chunked" in transfer_encoding.lower()
        if length is not None and length.isdigit() and not self._chunked:
            self._expected = int(length)

    def _feed_body(self, data: bytes) -> bool:
        body = self._body
        assert body is not None
        if not data:
            if self._expected is not None or self._chunked:
                raise CheckError("connection closed before the end of the body")
            self.body = bytes(body)  # read to the close
            return True
        body += data
        if len(body) > MAX_RESPONSE_BYTES:
            raise CheckError("response body too large")
        return self._body_complete()

    def _body_complete(self) -> bool:
        body = self._body
        assert body is not None
        if self._chunked:
            if not self._chunks_complete(body):
                return False
            self.body = _dechunk(bytes(body))
            return True
        if self._expected is not None and len(body) >= self._expected:
            self.body = bytes(body[: self._expected])
            return True
        return False

    def _chunks_complete(self, body: bytearray) -> bool:
        """Whether the last chunk has arrived; remembers how far whole chunks were seen."""
        position = self._chunk_at
        while (line_end := body.find(b"\r\n", position)) >= 0:
            size = _chunk_size(body[position:line_end])
            if size == 0:
                return True  # the last chunk: a trailer section does not count
            after = line_end + 2 + size + 2
            if len(body) < after:
                break
            position = after
        self._chunk_at = position
        return False


def _status(head: bytes | bytearray, end: int) -> int:
    """The status code of the status line that starts `head` (whose blank line is at `end`)."""
    line_end = head.find(b"\r\n", 0, end)
    status_line = bytes(head[: end if line_end < 0 else line_end])
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise CheckError(f"malformed status line {status_line.decode('latin-1')[:80]!r}")
    return int(parts[1])


def _chunk_size(line: bytes | bytearray) -> int:
    """The size on a chunk-size line, its extensions ignored (RFC 9112 §7.1)."""
    digits = bytes(line).split(b";", 1)[0].strip()
    if not digits or digits.translate(None, _HEX_DIGITS):
        raise CheckError("malformed chunk size")
    return int(digits, 16)


def _dechunk(data: bytes) -> bytes:
    """Decode a complete chunked body (RFC 9112 §7.1); CheckError if it is cut short."""
    out = bytearray()
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            raise CheckError("truncated chunked body")
        size = _chunk_size(data[position:line_end])
        position = line_end + 2
        if size == 0:
            return bytes(out)  # the last chunk: any trailer section does not count
        if len(data) < position + size + 2:
            raise CheckError("truncated chunked body")
        out += data[position : position + size]
        position += size + 2


@dataclass(frozen=True, kw_only=True)
class MiscCheck:
    """MISC_CHECK: run `argv` (misc_path, split), killed after `timeout` (misc_timeout)."""

    argv: tuple[str, ...]
    timeout: float
    runner: MiscRunner = field(repr=False)

    async def run(self, checker: CheckerId) -> HealthEvent:
        exit_code = await self.runner(self.argv, self.timeout)
        return MiscResult(checker=checker, exit_code=exit_code)


EffectSink = Callable[[Sequence[HealthEffect]], None]
Starter = Callable[[CheckerId, ResultCallback, SocketPoller], CheckInFlight]


# Seconds a check may start early to share a wake-up with others (see HealthScheduler._on_timer).
CHECK_SLACK = 0.01


class HealthScheduler:
    """Runs a HealthMonitor's checks on the running loop; hands every other order to `emit`.

    One timer (re-armed with `call_at` only when the monitor's next deadline moves earlier) starts
    due checks. A checker with `start` (TCP_CHECK, HTTP_GET) runs on loop callbacks and reports
    through `_on_result`; any other (MISC_CHECK) runs as its own task. Either way a slow server
    never delays another. `emit` receives PoolChanged / ServerUp / ServerDown / WeightChanged /
    Quorum* / RunNotifyScript orders in the order the core returned them; it must not block
    (queue async work).
    """

    def __init__(
        self,
        monitor: HealthMonitor,
        checkers: Mapping[CheckerId, Checker],
        emit: EffectSink,
    ) -> None:
        missing = set(monitor.checker_ids) - set(checkers)
        if missing:
            raise ValueError(f"no checker configured for {sorted(missing)[:3]}")
        self._monitor = monitor
        self._checkers = dict(checkers)
        # Keyed by the monitor's own CheckerId objects, which its RunCheck orders carry: a
        # lookup then matches by identity instead of comparing two dataclasses.
        self._starters: dict[CheckerId, Starter] = {}
        for checker_id in monitor.checker_ids:
            start = getattr(self._checkers[checker_id], "start", None)
            if callable(start):
                self._starters[checker_id] = start
        self._emit = emit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[CheckerId, CheckInFlight] = {}
        self._poller: SocketPoller | None = None
        self._stopped = False
        self._begun: dict[CheckerId, float] = {}  # loop time each running check started
        # Told of every finished check: (checker, result, loop time it finished, seconds taken).
        self.on_check: Callable[[CheckerId, HealthEvent, float, float], None] | None = None

    @property
    def checks_running(self) -> int:
        return len(self._tasks) + len(self._running)

    def start(self) -> None:
        """Start checking; call from the running loop. Emits the initial pools."""
        self._loop = asyncio.get_running_loop()
        if self._starters:
            self._poller = SocketPoller(self._loop)
        self._dispatch(self._monitor.start(self._loop.time()))
        self._arm()

    async def stop(self, *, shutdown: bool = True) -> None:
        """Cancel the timer and every running check; emit the monitor's shutdown orders unless
        `shutdown` is False (a reload hands the servers' health to a successor instead)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        running = list(self._running.values())
        self._running.clear()
        for check in running:
            check.cancel()
        if self._poller is not None:
            self._poller.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if shutdown:
            self._emit(self._monitor.shutdown())

    def _arm(self) -> None:
        if self._stopped:
            return
        assert self._loop is not None
        deadline = self._monitor.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # the armed timer fires first; it re-arms after running what is due
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        # Checks due within CHECK_SLACK start in this wake-up: a thousand servers then cost a
        # hundred wake-ups a second instead of a thousand, for a check at most that much early.
        self._dispatch(self._monitor.handle_timer(self._loop.time() + CHECK_SLACK))
        self._arm()

    def _dispatch(self, effects: Sequence[HealthEffect]) -> None:
        others: list[HealthEffect] = []
        for effect in effects:
            if isinstance(effect, RunCheck):
                self._start_check(effect.checker)
            else:
                others.append(effect)
        if others:
            self._emit(others)

    def _start_check(self, checker_id: CheckerId) -> None:
        assert self._loop is not None
        self._begun[checker_id] = self._loop.time()
        start = self._starters.get(checker_id)
        if start is None:
            task = self._loop.create_task(self._check(checker_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        assert self._poller is not None
        try:
            self._running[checker_id] = start(checker_id, self._on_result, self._poller)
        except Exception as error:  # a checker bug must not stall the server's schedule
            log.exception("checker %s raised", checker_id)
            event = CheckFailed(checker=checker_id, reason=f"checker error: {error!r}")
            self._running[checker_id] = self._loop.call_soon(self._on_result, event)

    def _on_result(self, event: HealthEvent) -> None:
        assert self._loop is not None
        self._running.pop(event.checker, None)
        if self._stopped:
            return
        self._observe(event)
        self._dispatch(self._monitor.handle(event, self._loop.time()))
        self._arm()

    def _observe(self, event: HealthEvent) -> None:
        assert self._loop is not None
        now = self._loop.time()
        begun = self._begun.pop(event.checker, now)
        if self.on_check is not None:
            self.on_check(event.checker, event, now, now - begun)

    async def _check(self, checker_id: CheckerId) -> None:
        assert self._loop is not None
        try:
            event = await self._checkers[checker_id].run(checker_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a checker bug must not stall the server's schedule
            log.exception("checker %s raised", checker_id)
            event = CheckFailed(checker=checker_id, reason=f"checker error: {error!r}")
        if self._stopped:
            return
        self._observe(event)
        self._dispatch(self._monitor.handle(event, self._loop.time()))
        self._arm()
