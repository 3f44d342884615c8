"""asyncio health checkers: HTTP_GET, TCP_CHECK and MISC_CHECK, each deciding "passed" or "failed".

Owns: the sockets of TCP_CHECK and HTTP_GET and the MISC_CHECK call into the project's script
runner. Must never: decide whether a server is up (the core does), schedule checks (the health
driver, `drivers.health`, does), run a subprocess itself (MISC_CHECK goes through an injected
runner, normally `vipkeeper.io.scripts.ScriptRunner`), block the loop, or let one check wait for
another: every check is bounded by its own `connect_timeout` (or `misc_timeout`), so a hanging
real server costs only its own timeout.

TCP_CHECK and HTTP_GET are the hot path (a thousand real servers at delay_loop 1 s make a
thousand checks a second), so they run without a task or a coroutine: `start` opens a
non-blocking socket, a `SocketPoller` (`io.poller`) reports when it is connected and when the
answer arrives (read by `io.http_response`), one `call_at` bounds it, and a callback takes the
result. Every way out (result, failure, deadline, `cancel`) goes through one `_release` that
unregisters the socket, cancels the deadline and closes the socket. `run` awaits the same path,
for callers that want a coroutine.

Protocol facts are from keepalived.conf(5): HTTP_GET checks every `url` (status default 200-299,
`digest` is the MD5 of the body in hex), Host is the virtualhost or else the server address;
TCP_CHECK succeeds when a connection is established within connect_timeout.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import ipaddress
import logging
import os
import select
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, ClassVar, Protocol

from vipkeeper.core.health import (
    CheckerId,
    CheckFailed,
    CheckSucceeded,
    HealthEvent,
    MiscResult,
)
from vipkeeper.core.records import record
from vipkeeper.io.http_response import CheckError, ResponseReader
from vipkeeper.io.poller import SocketPoller

if TYPE_CHECKING:
    from vipkeeper.io.scripts import ScriptRunner

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
_RECV_SIZE = 65536
_STREAM_NONBLOCKING = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
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
        self._response = ResponseReader(need_body=check.urls[self._index].digest is not None)
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


@record
class _ConnectingCheck:
    """What TCP_CHECK and HTTP_GET share: the server they connect to within `connect_timeout`,
    and a check as a `_probe` in flight on a `SocketPoller`."""

    _probe: ClassVar[Callable[..., CheckInFlight]]  # (check, poller, checker, done)

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
        return type(self)._probe(self, poller, checker, done)

    async def run(self, checker: CheckerId) -> HealthEvent:
        return await _await_result(self, checker)


@record
class TcpCheck(_ConnectingCheck):
    """TCP_CHECK: the server accepts a connection within `connect_timeout`."""

    _probe = _TcpProbe


@record
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


@record
class HttpGetCheck(_ConnectingCheck):
    """HTTP_GET: every url answers with an accepted status (and body digest, if configured)."""

    _probe = _HttpProbe

    urls: tuple[UrlCheck, ...] = (UrlCheck(),)
    virtualhost: str | None = None
    http_protocol: str = "1.0"  # "1.0", "1.0C" (1.0 with Connection: close) or "1.1"
    _requests: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
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


def _verify(url: UrlCheck, response: ResponseReader) -> None:
    if not url.status_ok(response.status):
        raise CheckError(f"status {response.status}")
    if url.digest is not None:
        assert response.body is not None
        digest = hashlib.md5(response.body, usedforsecurity=False).hexdigest()
        if digest != url.digest.lower():
            raise CheckError(f"digest {digest} differs from {url.digest.lower()}")


@record
class MiscCheck:
    """MISC_CHECK: run `argv` (misc_path, split), killed after `timeout` (misc_timeout)."""

    argv: tuple[str, ...]
    timeout: float
    runner: MiscRunner = field(repr=False)

    async def run(self, checker: CheckerId) -> HealthEvent:
        exit_code = await self.runner(self.argv, self.timeout)
        return MiscResult(checker=checker, exit_code=exit_code)
