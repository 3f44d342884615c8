"""io.checkers on loop callbacks: HTTP_GET and TCP_CHECK leave nothing behind and parse anything.

Proves: every way out of a check (result, failure, deadline, cancellation, HealthScheduler.stop)
closes its socket and leaves no poller registration and no live timer; a response is parsed the
same however the server splits it, byte by byte included; connect_timeout bounds each url as a
whole, connect included, and each url has its own connection and its own bound; IPv6 works; a
result callback that raises does not stop the other checks; the scheduler runs these checks
without a task each.

Long because it is the one module for io.checkers over real sockets: every checker kind meets the
same exits and the same hostile servers, with the fixtures they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from vipkeeper.core.health import (
    CheckerId,
    CheckerSpec,
    CheckFailed,
    CheckSucceeded,
    Endpoint,
    HealthEvent,
    HealthMonitor,
    ServerDown,
)
from vipkeeper.drivers.health import HealthScheduler
from vipkeeper.io import checkers, http_response
from vipkeeper.io.checkers import (
    HttpGetCheck,
    TcpCheck,
    UrlCheck,
)
from vipkeeper.io.http_response import CheckError, ResponseReader
from vipkeeper.io.poller import SocketPoller
from vipkeeper.testing.builders import virtual_server_spec
from vipkeeper.testing.waits import GUARD, wait_for

LOCALHOST = "127.0.0.1"
BODY = b"<html>real server</html>\n" * 4
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


def checker_id(port: int) -> CheckerId:
    return CheckerId(virtual_server="vs", server=Endpoint(address=LOCALHOST, port=port), index=0)


def open_fds() -> set[tuple[str, str]]:
    """This process's open fds and what they are (socket:[inode] ...).

    Compared as "nothing new" rather than by count: objects of earlier tests may be collected,
    closing their fds, while a test runs.
    """
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone by now
            fds.add((name, os.readlink(f"/proc/self/fd/{name}")))
    return fds


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return framed + b"0\r\nX-Trailer: yes\r\n\r\n"


# --- a server in this process that answers with given bytes, all at once or in drips ------------


class Server:
    """Answers each request with `reply`, in `piece`-byte writes `pause` apart; None: never."""

    def __init__(self, reply: bytes | None, *, piece: int = 0, pause: float = 0.0) -> None:
        self.reply, self.piece, self.pause = reply, piece, pause
        self.transports: set[asyncio.Transport] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    async def answer(self, transport: asyncio.Transport) -> None:
        assert self.reply is not None
        step = self.piece or len(self.reply)
        for start in range(0, len(self.reply), step):
            transport.write(self.reply[start : start + step])
            if self.pause:
                await asyncio.sleep(self.pause)
        transport.close()

    async def drop_connections(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for transport in self.transports:
            transport.abort()
        await asyncio.sleep(0)


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.transports.add(transport)
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer or self.server.reply is None:
            return
        self.buffer = b""
        task = asyncio.get_running_loop().create_task(self.server.answer(self.transport))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)


@asynccontextmanager
async def serving(
    reply: bytes | None, *, host: str = LOCALHOST, piece: int = 0, pause: float = 0.0
) -> AsyncIterator[tuple[Server, int]]:
    protocol = Server(reply, piece=piece, pause=pause)
    server = await asyncio.get_running_loop().create_server(protocol, host, 0)
    try:
        yield protocol, int(server.sockets[0].getsockname()[1])
    finally:
        await protocol.drop_connections()
        server.close()
        await server.wait_closed()


@contextmanager
def full_listen_queue() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A listener whose accept queue is full: further SYNs are dropped, connects stay pending.

    Yields the listener and the connections that fill it (the last one still pending).
    """
    listener = socket.socket()
    listener.bind((LOCALHOST, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            fillers.append(filler)
            filler.connect_ex((LOCALHOST, port))
            if filler.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 2:  # SYN_SENT
                break
        else:
            pytest.skip("cannot fill a listen queue on this kernel")
        yield listener, fillers
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextmanager
def port_that_never_answers() -> Iterator[int]:
    with full_listen_queue() as (listener, _fillers):
        yield int(listener.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


async def released_everything(
    poller: SocketPoller, server: Server, before: set[tuple[str, str]]
) -> None:
    """No probe is left in the poller; once it is closed and the server has dropped its side,
    no descriptor opened after `before` stays open."""
    assert poller._probes == {}
    poller.close()
    await server.drop_connections()
    await wait_for(lambda: open_fds() <= before)


class Started:
    """One check started on a poller by hand, with its result as a future."""

    def __init__(self, check: HttpGetCheck | TcpCheck, poller: SocketPoller, port: int) -> None:
        self.result: asyncio.Future[HealthEvent] = poller.loop.create_future()
        self.probe = check.start(checker_id(port), self.result.set_result, poller)

    def assert_released(self) -> None:
        probe = self.probe
        assert probe._sock is None and probe._timer is None and probe._pending is None
        assert probe._watching == checkers._IDLE


# --- nothing is left behind -----------------------------------------------------------------------


SCENARIOS = {
    "success": (OK, 1.0, CheckSucceeded),
    "bad status": (b"HTTP/1.0 500 Oops\r\n\r\n", 1.0, "GET /: status 500"),
    "closed before the head": (b"HTTP/1.0 200", 1.0, "before the response headers"),
    "no answer": (None, 0.2, "GET /: no answer within connect_timeout 0.2s"),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("digest", [None, hashlib.md5(BODY).hexdigest()])
async def test_an_http_check_releases_everything_whatever_its_outcome(scenario, digest):
    reply, timeout, expected = SCENARIOS[scenario]
    loop = asyncio.get_running_loop()
    async with serving(reply) as (server, port):
        before = open_fds()
        poller = SocketPoller(loop)
        url = UrlCheck(path="/", digest=digest)
        check = HttpGetCheck(address=LOCALHOST, port=port, urls=(url,), connect_timeout=timeout)
        started = Started(check, poller, port)
        result = await asyncio.wait_for(started.result, GUARD)
        if isinstance(expected, str):
            assert isinstance(result, CheckFailed) and expected in result.reason
        else:
            assert isinstance(result, expected)
        started.assert_released()
        await released_everything(poller, server, before)


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_a_connect_that_never_completes_times_out_and_releases_everything(kind):
    loop = asyncio.get_running_loop()
    with port_that_never_answers() as port:
        before = open_fds()
        poller = SocketPoller(loop)
        check: HttpGetCheck | TcpCheck
        if kind == "http":
            check = HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=0.2)
        else:
            check = TcpCheck(address=LOCALHOST, port=port, connect_timeout=0.2)
        begun = loop.time()  # before the check starts: its connect deadline counts from there
        started = Started(check, poller, port)
        assert poller._probes  # waiting for the handshake, not established at once
        result = await asyncio.wait_for(started.result, GUARD)
        assert loop.time() - begun >= 0.2
        prefix = "GET /: " if kind == "http" else ""
        assert result == CheckFailed(
            checker=checker_id(port), reason=f"{prefix}no answer within connect_timeout 0.2s"
        )
        started.assert_released()
        poller.close()
        assert open_fds() <= before


async def test_a_request_waits_for_a_connect_that_completes_late():
    loop = asyncio.get_running_loop()
    with full_listen_queue() as (listener, fillers):
        port = int(listener.getsockname()[1])
        poller = SocketPoller(loop)
        check = HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=10)
        started = Started(check, poller, port)
        assert poller._probes  # the SYN was dropped: waiting for the handshake
        for filler in fillers:  # make room in the queue: the SYN's retry (after 1 s) gets in
            filler.close()
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                listener.accept()[0].close()
        connection, _ = await asyncio.wait_for(loop.sock_accept(listener), GUARD)
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await loop.sock_recv(connection, 1024)
            assert request.startswith(b"GET / HTTP/1.0\r\n")
            await loop.sock_sendall(connection, OK)
        result = await asyncio.wait_for(started.result, GUARD)
        assert result == CheckSucceeded(checker=checker_id(port))
        started.assert_released()
        poller.close()


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_a_refused_connection_fails_and_releases_everything(kind):
    port = closed_port()
    before = open_fds()
    poller = SocketPoller(asyncio.get_running_loop())
    check: HttpGetCheck | TcpCheck
    if kind == "http":
        check = HttpGetCheck(address=LOCALHOST, port=port)
    else:
        check = TcpCheck(address=LOCALHOST, port=port)
    started = Started(check, poller, port)
    result = await asyncio.wait_for(started.result, GUARD)
    prefix = "GET /: " if kind == "http" else ""
    assert result == CheckFailed(checker=checker_id(port), reason=f"{prefix}connection refused")
    started.assert_released()
    poller.close()
    assert open_fds() <= before


async def test_a_tcp_check_established_at_once_still_reports_from_the_loop():
    async with serving(None) as (server, port):
        before = open_fds()
        poller = SocketPoller(asyncio.get_running_loop())
        results: list[HealthEvent] = []
        started = TcpCheck(address=LOCALHOST, port=port).start(
            checker_id(port), results.append, poller
        )
        assert results == []  # never from inside start
        await wait_for(lambda: bool(results))
        assert results == [CheckSucceeded(checker=checker_id(port))]
        started.cancel()  # a no-op once finished
        poller.close()
        await server.drop_connections()
        await wait_for(lambda: open_fds() <= before)


# --- cancellation ---------------------------------------------------------------------------------


async def test_cancelling_a_check_waiting_for_its_answer_closes_it_and_never_reports():
    loop = asyncio.get_running_loop()
    async with serving(None) as (server, port):
        before = open_fds()
        poller = SocketPoller(loop)
        results: list[HealthEvent] = []
        check = HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=0.2)
        probe = check.start(checker_id(port), results.append, poller)
        await wait_for(lambda: server.connections == 1)
        probe.cancel()
        probe.cancel()  # idempotent
        await asyncio.sleep(0.4)  # past the deadline: a live timer would report now
        assert results == []
        await released_everything(poller, server, before)


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_cancelling_a_check_still_connecting_closes_it_and_never_reports(kind):
    with port_that_never_answers() as port:
        before = open_fds()
        poller = SocketPoller(asyncio.get_running_loop())
        results: list[HealthEvent] = []
        check: HttpGetCheck | TcpCheck
        if kind == "http":
            check = HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=0.2)
        else:
            check = TcpCheck(address=LOCALHOST, port=port, connect_timeout=0.2)
        check.start(checker_id(port), results.append, poller).cancel()
        await asyncio.sleep(0.4)
        assert results == []
        poller.close()
        assert open_fds() <= before


async def test_cancelling_a_check_whose_result_is_queued_drops_the_result():
    port = closed_port()  # a failure that may be found inside start
    async with serving(None) as (server, open_port):
        before = open_fds()
        poller = SocketPoller(asyncio.get_running_loop())
        results: list[HealthEvent] = []
        TcpCheck(address=LOCALHOST, port=open_port).start(
            checker_id(open_port), results.append, poller
        ).cancel()
        TcpCheck(address=LOCALHOST, port=port).start(
            checker_id(port), results.append, poller
        ).cancel()
        await asyncio.sleep(0.05)
        assert results == []
        poller.close()
        await server.drop_connections()
        await wait_for(lambda: open_fds() <= before)


async def test_cancelling_run_cancels_the_check_and_closes_everything():
    async with serving(None) as (server, port):
        before = open_fds()
        task = asyncio.create_task(HttpGetCheck(address=LOCALHOST, port=port).run(checker_id(port)))
        await wait_for(lambda: server.connections == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.drop_connections()
        await wait_for(lambda: open_fds() <= before)


async def test_scheduler_stop_cancels_checks_in_flight_and_closes_every_socket():
    loop = asyncio.get_running_loop()
    async with serving(None) as (hanging, port):
        with port_that_never_answers() as silent_port:
            before = open_fds()
            endpoints = [
                Endpoint(address=LOCALHOST, port=port),
                Endpoint(address=LOCALHOST, port=silent_port),
            ]
            spec = CheckerSpec(delay_loop=60, retry=0)
            vs = virtual_server_spec(endpoints, spec)
            checks = {
                checker_id(port): HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=30),
                checker_id(silent_port): TcpCheck(
                    address=LOCALHOST, port=silent_port, connect_timeout=30
                ),
            }
            scheduler = HealthScheduler(HealthMonitor([vs]), checks, lambda effects: None)
            scheduler.start()
            await wait_for(lambda: hanging.connections == 1)
            assert scheduler.checks_running == 2
            assert len(asyncio.all_tasks()) == 1  # this test's: the checks run without tasks
            await scheduler.stop()
            assert scheduler.checks_running == 0
            await hanging.drop_connections()
            await wait_for(lambda: open_fds() <= before)
            assert not loop.is_closed()


# --- responses however they arrive ----------------------------------------------------------------


REPLIES = {
    "length": OK,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(BODY, 7),
    "eof": b"HTTP/1.0 200 OK\r\nServer: test\r\n\r\n" + BODY,
}


@pytest.mark.parametrize("mode", REPLIES)
async def test_a_response_delivered_byte_by_byte_is_read_whole(mode):
    good, bad = hashlib.md5(BODY).hexdigest(), hashlib.md5(BODY + b"!").hexdigest()
    async with serving(REPLIES[mode], piece=1, pause=0.0005) as (server, port):
        before = open_fds()
        matched = await HttpGetCheck(
            address=LOCALHOST, port=port, urls=(UrlCheck(digest=good),), connect_timeout=GUARD
        ).run(checker_id(port))
        mismatched = await HttpGetCheck(
            address=LOCALHOST, port=port, urls=(UrlCheck(digest=bad),), connect_timeout=GUARD
        ).run(checker_id(port))
        status_only = await HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=GUARD).run(
            checker_id(port)
        )
        assert isinstance(matched, CheckSucceeded)
        assert mismatched == CheckFailed(
            checker=checker_id(port), reason=f"GET /: digest {good} differs from {bad}"
        )
        assert isinstance(status_only, CheckSucceeded)
        await server.drop_connections()
        await wait_for(lambda: open_fds() <= before)


async def test_connect_timeout_bounds_a_url_as_a_whole_even_when_bytes_keep_coming():
    # Each byte arrives well within the timeout; the whole answer does not.
    async with serving(OK, piece=1, pause=0.02) as (_server, port):
        loop = asyncio.get_running_loop()
        begun = loop.time()
        result = await HttpGetCheck(address=LOCALHOST, port=port, connect_timeout=0.3).run(
            checker_id(port)
        )
        assert result == CheckFailed(
            checker=checker_id(port), reason="GET /: no answer within connect_timeout 0.3s"
        )
        assert loop.time() - begun < 2.0


async def test_each_url_has_its_own_connection_and_its_own_bound():
    # Each answer takes about 0.18 s against a 0.5 s bound: three urls together take longer
    # than one bound, and pass, each within its own.
    async with serving(OK, piece=len(OK) // 4 + 1, pause=0.06) as (server, port):
        digest = hashlib.md5(BODY).hexdigest()  # the whole body, not just the head, is awaited
        urls = tuple(UrlCheck(path=path, digest=digest) for path in ("/a", "/b", "/c"))
        loop = asyncio.get_running_loop()
        begun = loop.time()
        result = await HttpGetCheck(
            address=LOCALHOST, port=port, urls=urls, connect_timeout=0.5
        ).run(checker_id(port))
        assert loop.time() - begun > 0.5
        assert result == CheckSucceeded(checker=checker_id(port))
        assert server.connections == 3


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"SPDY 200 OK\r\n\r\n", "GET /: malformed status line 'SPDY 200 OK'"),
        (b"HTTP/1.1 \xb2\xb9\xb3 OK\r\n\r\n", "GET /: malformed status line"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            "GET /: malformed chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-10\r\nabc\r\n",
            "GET /: malformed chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            "GET /: connection closed before the end of the body",
        ),
    ],
)
async def test_a_broken_response_fails_with_its_reason(reply, reason):
    async with serving(reply) as (_server, port):
        url = UrlCheck(digest=hashlib.md5(b"").hexdigest())
        result = await HttpGetCheck(address=LOCALHOST, port=port, urls=(url,)).run(checker_id(port))
        assert isinstance(result, CheckFailed)
        assert result.reason.startswith(reason)


@pytest.mark.parametrize("pause", [0.0, 0.005])
async def test_a_body_past_the_limit_fails(monkeypatch, pause):
    monkeypatch.setattr(http_response, "MAX_RESPONSE_BYTES", 64)
    reply = b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 200
    async with serving(reply, piece=16, pause=pause) as (_server, port):
        url = UrlCheck(digest=hashlib.md5(b"").hexdigest())
        result = await HttpGetCheck(address=LOCALHOST, port=port, urls=(url,)).run(checker_id(port))
        assert result == CheckFailed(
            checker=checker_id(port), reason="GET /: response body too large"
        )


async def test_a_connection_reset_fails_with_the_system_reason():
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # with linger 0: an RST

    server = await asyncio.start_server(reset, LOCALHOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        result = await HttpGetCheck(address=LOCALHOST, port=port).run(checker_id(port))
    finally:
        server.close()
    assert result == CheckFailed(checker=checker_id(port), reason="GET /: Connection reset by peer")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_http_and_tcp_checks_reach_an_ipv6_server():
    async with serving(None, host="::1") as (server, port):
        server.reply = OK
        ident = CheckerId(virtual_server="vs", server=Endpoint(address="::1", port=port), index=0)
        http = await HttpGetCheck(address="::1", port=port).run(ident)
        tcp = await TcpCheck(address="::1", port=port).run(ident)
        assert http == CheckSucceeded(checker=ident) and tcp == CheckSucceeded(checker=ident)


def test_a_real_server_must_be_an_ip_address():
    with pytest.raises(ValueError, match="not an IP address"):
        HttpGetCheck(address="www.example.test", port=80)
    with pytest.raises(ValueError, match="not an IP address"):
        TcpCheck(address="www.example.test", port=80)
    assert TcpCheck(address="fe80::1%lo", port=80) == TcpCheck(address="fe80::1%lo", port=80)


# --- callbacks that fail --------------------------------------------------------------------------


async def test_a_result_callback_that_raises_does_not_stop_the_other_checks():
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with serving(OK) as (server, port):
            before = open_fds()
            poller = SocketPoller(loop)

            def explode(event: HealthEvent) -> None:
                raise RuntimeError("receiver bug")

            results: list[HealthEvent] = []
            check = HttpGetCheck(address=LOCALHOST, port=port)
            probes = [check.start(checker_id(port), explode, poller)]
            probes += [check.start(checker_id(port), results.append, poller) for _ in range(3)]
            await wait_for(lambda: len(results) == 3 and len(reported) == 1)
            assert all(isinstance(r, CheckSucceeded) for r in results)
            assert "receiver bug" in repr(reported[0].get("exception"))
            await released_everything(poller, server, before)
    finally:
        loop.set_exception_handler(None)


async def test_an_unexpected_error_inside_a_check_is_reported_as_a_checker_error(monkeypatch):
    def broken(head: bytes, end: int) -> int:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(http_response, "_status", broken)
    async with serving(OK) as (server, port):
        before = open_fds()
        result = await HttpGetCheck(address=LOCALHOST, port=port).run(checker_id(port))
        assert result == CheckFailed(
            checker=checker_id(port), reason="checker error: RuntimeError('parser bug')"
        )
        await server.drop_connections()
        await wait_for(lambda: open_fds() <= before)


class StartExplodes:
    def start(self, checker: CheckerId, done: object, poller: object) -> object:
        raise RuntimeError("bug in start")

    async def run(self, checker: CheckerId) -> HealthEvent:
        raise AssertionError("the scheduler should have used start")


async def test_scheduler_reports_a_checker_whose_start_raises_as_a_failed_check():
    server = Endpoint(address=LOCALHOST, port=1)
    vs = virtual_server_spec([server], CheckerSpec(retry=0, delay_loop=60))
    downs: list[ServerDown] = []
    scheduler = HealthScheduler(
        HealthMonitor([vs]),
        {checker_id(1): StartExplodes()},  # type: ignore[dict-item]
        lambda effects: downs.extend(e for e in effects if isinstance(e, ServerDown)),
    )
    scheduler.start()
    try:
        await wait_for(lambda: bool(downs))
        assert "bug in start" in downs[0].reason
    finally:
        await scheduler.stop()


# --- the response reader, sans I/O ----------------------------------------------------------------


def read(pieces: list[bytes], *, need_body: bool) -> ResponseReader:
    reader = ResponseReader(need_body=need_body)
    for piece in pieces:
        if reader.feed(piece):
            return reader
    assert reader.feed(b""), "incomplete at the close"
    return reader


@pytest.mark.parametrize("mode", REPLIES)
def test_the_reader_gives_the_same_answer_for_every_split_of_a_response(mode):
    reply = REPLIES[mode]
    for cut in range(len(reply) + 1):
        for second_cut in (cut, min(len(reply), cut + 1), min(len(reply), cut + 5)):
            pieces = [p for p in (reply[:cut], reply[cut:second_cut], reply[second_cut:]) if p]
            reader = read(pieces, need_body=True)
            assert (reader.status, reader.body) == (200, BODY), (cut, second_cut)
    reader = read([bytes([b]) for b in reply], need_body=True)
    assert (reader.status, reader.body) == (200, BODY)


def test_the_reader_without_a_digest_is_done_at_the_end_of_the_head():
    reader = ResponseReader(need_body=False)
    head, body = OK.split(b"\r\n\r\n", 1)
    assert not reader.feed(head + b"\r\n")
    assert reader.feed(b"\r\n" + body[:3])
    assert (reader.status, reader.body) == (200, None)


def test_the_reader_fails_a_connection_closed_before_the_head():
    reader = ResponseReader(need_body=False)
    assert not reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(CheckError, match="before the response headers"):
        reader.feed(b"")
