"""asyncio health checkers (HTTP_GET, TCP_CHECK, MISC_CHECK) and the scheduler that drives them.

Owns: the sockets of TCP_CHECK and HTTP_GET, the MISC_CHECK call into the project's script
runner, and `HealthScheduler`, which runs the `RunCheck` orders of a `core.health.HealthMonitor`
as independent tasks on one asyncio loop and feeds every result back with `loop.time()`.
Must never: decide whether a server is up (the core does), run a subprocess itself (MISC_CHECK
goes through an injected runner, normally `vipkeeper.io.scripts.ScriptRunner`), block the loop,
or let one check wait for another: every check is bounded by its own `connect_timeout` (or
`misc_timeout`), so a hanging real server costs only its own timeout.

Protocol facts are from keepalived.conf(5): HTTP_GET checks every `url` (status default 200-299,
`digest` is the MD5 of the body in hex), Host is the virtualhost or else the server address;
TCP_CHECK succeeds when a connection is established within connect_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
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


class Checker(Protocol):
    """One configured check of one real server."""

    async def run(self, checker: CheckerId) -> HealthEvent: ...


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


async def _connect(address: str, port: int) -> socket.socket:
    """Open a non-blocking TCP connection to an IP literal (real servers are never names)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


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


@dataclass(frozen=True, kw_only=True)
class TcpCheck:
    """TCP_CHECK: the server accepts a connection within `connect_timeout`."""

    address: str  # connect_ip, or the real server's address
    port: int  # connect_port, or the real server's port
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    async def run(self, checker: CheckerId) -> HealthEvent:
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock = await _connect(self.address, self.port)
            sock.close()
        except (OSError, TimeoutError) as error:
            return CheckFailed(checker=checker, reason=_describe(error, self.connect_timeout))
        return CheckSucceeded(checker=checker)


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
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes | None  # None when it was not needed (no digest) and so not read


@dataclass(frozen=True, kw_only=True)
class HttpGetCheck:
    """HTTP_GET: every url answers with an accepted status (and body digest, if configured)."""

    address: str
    port: int
    urls: tuple[UrlCheck, ...] = (UrlCheck(),)
    virtualhost: str | None = None
    http_protocol: str = "1.0"  # "1.0", "1.0C" (1.0 with Connection: close) or "1.1"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

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

    async def run(self, checker: CheckerId) -> HealthEvent:
        for url in self.urls:
            try:
                # Each url gets its own connection, bounded as a whole by connect_timeout.
                async with asyncio.timeout(self.connect_timeout):
                    response = await self.fetch(url)
                _verify(url, response)
            except (OSError, TimeoutError, CheckError) as error:
                reason = f"GET {url.path}: {_describe(error, self.connect_timeout)}"
                return CheckFailed(checker=checker, reason=reason)
        return CheckSucceeded(checker=checker)

    async def fetch(self, url: UrlCheck) -> HttpResponse:
        loop = asyncio.get_running_loop()
        sock = await _connect(self.address, self.port)
        try:
            await loop.sock_sendall(sock, self.request(url))
            return await _read_response(sock, need_body=url.digest is not None)
        finally:
            sock.close()


def _verify(url: UrlCheck, response: HttpResponse) -> None:
    if not url.status_ok(response.status):
        raise CheckError(f"status {response.status}")
    if url.digest is not None:
        assert response.body is not None
        digest = hashlib.md5(response.body, usedforsecurity=False).hexdigest()
        if digest != url.digest.lower():
            raise CheckError(f"digest {digest} differs from {url.digest.lower()}")


async def _read_response(sock: socket.socket, *, need_body: bool) -> HttpResponse:
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = await loop.sock_recv(sock, _RECV_SIZE)
        if not chunk:
            raise CheckError("connection closed before the response headers")
        buffer += chunk
        if len(buffer) > MAX_RESPONSE_BYTES:
            raise CheckError("response headers too large")
    head = bytes(buffer[:end]).decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise CheckError(f"malformed status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    status = int(parts[1])
    if not need_body:
        return HttpResponse(status=status, headers=headers, body=None)

    body = bytearray(buffer[end + 4 :])
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")
    expected = int(length) if length is not None and length.isdigit() and not chunked else None
    while expected is None or len(body) < expected:
        if chunked and _chunked_complete(body):
            break
        chunk = await loop.sock_recv(sock, _RECV_SIZE)
        if not chunk:
            if expected is not None or chunked:
                raise CheckError("connection closed before the end of the body")
            break
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise CheckError("response body too large")
    data = _dechunk(bytes(body)) if chunked else bytes(body[:expected])
    return HttpResponse(status=status, headers=headers, body=data)


def _chunked_complete(body: bytearray) -> bool:
    try:
        _dechunk(bytes(body))
    except CheckError:
        return False
    return True


def _dechunk(data: bytes) -> bytes:
    """Decode a complete chunked body (RFC 9112 §7.1); CheckError if it is cut short."""
    out = bytearray()
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            raise CheckError("truncated chunked body")
        size_text = data[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise CheckError("malformed chunk size") from None
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


# Seconds a check may start early to share a wake-up with others (see HealthScheduler._on_timer).
CHECK_SLACK = 0.01


class HealthScheduler:
    """Runs a HealthMonitor's checks on the running loop; hands every other order to `emit`.

    One timer (re-armed with `call_at` only when the monitor's next deadline moves earlier) starts
    due checks; each check is its own task, so a slow server never delays another. `emit`
    receives PoolChanged / ServerUp / ServerDown / WeightChanged / Quorum* / RunNotifyScript
    orders in the order the core returned them; it must not block (queue async work).
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
        self._emit = emit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def checks_running(self) -> int:
        return len(self._tasks)

    def start(self) -> None:
        """Start checking; call from the running loop. Emits the initial pools."""
        self._loop = asyncio.get_running_loop()
        self._dispatch(self._monitor.start(self._loop.time()))
        self._arm()

    async def stop(self) -> None:
        """Cancel the timer and every running check; emit the monitor's shutdown orders."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
        assert self._loop is not None
        others: list[HealthEffect] = []
        for effect in effects:
            if isinstance(effect, RunCheck):
                task = self._loop.create_task(self._check(effect.checker))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                others.append(effect)
        if others:
            self._emit(others)

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
        self._dispatch(self._monitor.handle(event, self._loop.time()))
        self._arm()
