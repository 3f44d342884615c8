"""io.checkers: real HTTP_GET, TCP_CHECK and MISC_CHECK against servers the tests start locally."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from vipkeeper.core.health import (
    CheckerId,
    CheckerSpec,
    CheckFailed,
    CheckSucceeded,
    Endpoint,
    HealthEffect,
    HealthEvent,
    HealthMonitor,
    MiscResult,
    Pool,
    PoolChanged,
    RealServer,
    RealServerSpec,
    ServerDown,
    ServerUp,
    VirtualServerSpec,
)
from vipkeeper.drivers.health import HealthScheduler
from vipkeeper.io.checkers import (
    HttpGetCheck,
    MiscCheck,
    TcpCheck,
    UrlCheck,
    misc_runner,
)
from vipkeeper.io.scripts import ScriptRunner
from vipkeeper.testing.builders import virtual_server_spec
from vipkeeper.testing.waits import GUARD, wait_for

LOCALHOST = "127.0.0.1"


def checker_id(port: int, index: int = 0) -> CheckerId:
    return CheckerId(
        virtual_server="vs", server=Endpoint(address=LOCALHOST, port=port), index=index
    )


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"hello"
    mode: str = "length"  # "length", "chunked" or "eof"


@dataclass
class HttpServer:
    """A tiny HTTP/1.x server: one reply per path, records every request head it receives."""

    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            path = head.split(b" ", 2)[1].decode()
            reply = self.replies.get(path, Reply(status=404, body=b"not found"))
            writer.write(f"HTTP/1.1 {reply.status} X\r\nConnection: close\r\n".encode())
            if reply.mode == "length":
                writer.write(f"Content-Length: {len(reply.body)}\r\n\r\n".encode() + reply.body)
            elif reply.mode == "chunked":
                writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
                for start in range(0, len(reply.body), 3):
                    piece = reply.body[start : start + 3]
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"\r\n" + reply.body)
            await writer.drain()
        writer.close()


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    server = HttpServer()
    server.server = await asyncio.start_server(server.handle, LOCALHOST, 0)
    try:
        yield server
    finally:
        server.server.close()


@pytest.fixture
async def hanging_server() -> AsyncIterator[int]:
    """Accepts connections and never answers."""
    never = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    server = await asyncio.start_server(handle, LOCALHOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def http_check(port: int, *urls: UrlCheck, **options: object) -> HttpGetCheck:
    return HttpGetCheck(
        address=LOCALHOST,
        port=port,
        urls=urls or (UrlCheck(path="/"),),
        connect_timeout=options.pop("connect_timeout", 5.0),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


# --- HTTP_GET -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204, 299])
async def test_http_get_passes_on_any_2xx_when_no_status_code_is_configured(http_server, status):
    http_server.replies["/"] = Reply(status=status)
    result = await http_check(http_server.port).run(checker_id(http_server.port))
    assert result == CheckSucceeded(checker=checker_id(http_server.port))


@pytest.mark.parametrize("status", [199, 300, 301, 404, 500])
async def test_http_get_fails_outside_2xx_when_no_status_code_is_configured(http_server, status):
    http_server.replies["/"] = Reply(status=status)
    result = await http_check(http_server.port).run(checker_id(http_server.port))
    assert isinstance(result, CheckFailed)
    assert f"status {status}" in result.reason


async def test_http_get_accepts_only_the_configured_status_codes(http_server):
    http_server.replies["/moved"] = Reply(status=301)
    http_server.replies["/ok"] = Reply(status=200)
    only_301 = frozenset({301})
    passed = await http_check(http_server.port, UrlCheck(path="/moved", status_codes=only_301)).run(
        checker_id(http_server.port)
    )
    failed = await http_check(http_server.port, UrlCheck(path="/ok", status_codes=only_301)).run(
        checker_id(http_server.port)
    )
    assert isinstance(passed, CheckSucceeded)
    assert isinstance(failed, CheckFailed) and "status 200" in failed.reason


@pytest.mark.parametrize("mode", ["length", "chunked", "eof"])
async def test_http_get_digest_is_the_md5_of_the_body(http_server, mode):
    body = b"<html>real server one</html>\n" * 50
    http_server.replies["/index.html"] = Reply(body=body, mode=mode)
    good = hashlib.md5(body).hexdigest()
    bad = hashlib.md5(body + b"x").hexdigest()
    port = http_server.port
    matched = await http_check(port, UrlCheck(path="/index.html", digest=good.upper())).run(
        checker_id(port)
    )
    mismatched = await http_check(port, UrlCheck(path="/index.html", digest=bad)).run(
        checker_id(port)
    )
    assert isinstance(matched, CheckSucceeded)
    assert isinstance(mismatched, CheckFailed)
    assert good in mismatched.reason and bad in mismatched.reason


async def test_http_get_sends_the_virtualhost_as_host_header(http_server):
    http_server.replies["/"] = Reply()
    port = http_server.port
    await http_check(port, virtualhost="www.example.test").run(checker_id(port))
    url_level = UrlCheck(path="/", virtualhost="url.example.test")
    await http_check(port, url_level, virtualhost="www.example.test").run(checker_id(port))
    await http_check(port).run(checker_id(port))
    hosts = [
        line.split(b":", 1)[1].strip().decode()
        for request in http_server.requests
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"host:")
    ]
    assert hosts == ["www.example.test", "url.example.test", f"{LOCALHOST}:{port}"]


@pytest.mark.parametrize(
    ("protocol", "request_line", "close"),
    [
        ("1.0", b"GET / HTTP/1.0", False),
        ("1.0C", b"GET / HTTP/1.0", True),
        ("1.1", b"GET / HTTP/1.1", True),
    ],
)
async def test_http_get_speaks_the_configured_http_protocol(
    http_server, protocol, request_line, close
):
    http_server.replies["/"] = Reply()
    result = await http_check(http_server.port, http_protocol=protocol).run(
        checker_id(http_server.port)
    )
    assert isinstance(result, CheckSucceeded)
    (request,) = http_server.requests
    assert request.split(b"\r\n")[0] == request_line
    assert (b"Connection: close" in request) == close


async def test_http_get_fails_when_any_url_fails(http_server):
    http_server.replies["/a"] = Reply()
    port = http_server.port
    result = await http_check(port, UrlCheck(path="/a"), UrlCheck(path="/missing")).run(
        checker_id(port)
    )
    assert isinstance(result, CheckFailed)
    assert result.reason == "GET /missing: status 404"


async def test_http_get_to_a_closed_port_fails_as_refused():
    port = closed_port()
    result = await http_check(port).run(checker_id(port))
    assert result == CheckFailed(checker=checker_id(port), reason="GET /: connection refused")


# --- TCP_CHECK ------------------------------------------------------------------------------------


async def test_tcp_check_passes_when_the_server_accepts(http_server):
    port = http_server.port
    result = await TcpCheck(address=LOCALHOST, port=port, connect_timeout=5).run(checker_id(port))
    assert result == CheckSucceeded(checker=checker_id(port))


async def test_tcp_check_fails_when_the_connection_is_refused():
    port = closed_port()
    result = await TcpCheck(address=LOCALHOST, port=port, connect_timeout=5).run(checker_id(port))
    assert result == CheckFailed(checker=checker_id(port), reason="connection refused")


# --- one check never waits for another ------------------------------------------------------------


async def test_a_hanging_server_costs_only_its_own_timeout_and_never_delays_another_check(
    http_server, hanging_server
):
    http_server.replies["/"] = Reply()
    finished: list[str] = []

    async def run(label: str, check: HttpGetCheck | TcpCheck, port: int) -> HealthEvent:
        result = await check.run(checker_id(port))
        finished.append(label)
        return result

    hanging = asyncio.create_task(
        run("hanging", http_check(hanging_server, connect_timeout=1.0), hanging_server)
    )
    await asyncio.sleep(0)  # let the hanging check connect and send first
    healthy_http = asyncio.create_task(
        run("http", http_check(http_server.port, connect_timeout=1.0), http_server.port)
    )
    healthy_tcp = asyncio.create_task(
        run(
            "tcp",
            TcpCheck(address=LOCALHOST, port=http_server.port, connect_timeout=1.0),
            http_server.port,
        )
    )
    results = await asyncio.wait_for(asyncio.gather(hanging, healthy_http, healthy_tcp), GUARD)

    assert finished[-1] == "hanging"
    assert sorted(finished[:2]) == ["http", "tcp"]
    assert isinstance(results[1], CheckSucceeded) and isinstance(results[2], CheckSucceeded)
    assert results[0] == CheckFailed(
        checker=checker_id(hanging_server), reason="GET /: no answer within connect_timeout 1s"
    )


# --- MISC_CHECK -----------------------------------------------------------------------------------


@pytest.fixture
def runner() -> ScriptRunner:
    return ScriptRunner(max_concurrent=4)


@pytest.mark.parametrize("code", [0, 1, 2, 42, 255])
async def test_misc_check_reports_the_script_exit_status(runner, code):
    check = MiscCheck(argv=("sh", "-c", f"exit {code}"), timeout=10, runner=misc_runner(runner))
    assert await check.run(checker_id(1)) == MiscResult(checker=checker_id(1), exit_code=code)


async def test_misc_check_that_cannot_start_has_no_exit_status(runner, tmp_path):
    check = MiscCheck(argv=(str(tmp_path / "absent"),), timeout=10, runner=misc_runner(runner))
    assert await check.run(checker_id(1)) == MiscResult(checker=checker_id(1), exit_code=None)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_misc_check_past_its_timeout_is_killed_with_its_children(runner, tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"
    check = MiscCheck(argv=("sh", "-c", script), timeout=0.5, runner=misc_runner(runner))
    result = await asyncio.wait_for(check.run(checker_id(1)), GUARD)
    assert result == MiscResult(checker=checker_id(1), exit_code=None)
    shell, child = (int(pid) for pid in pids.read_text().split())
    await wait_for(lambda: not process_exists(shell) and not process_exists(child))


# --- HealthScheduler ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.effects: list[HealthEffect] = []
        self.changed = asyncio.Event()

    def __call__(self, effects) -> None:
        self.effects.extend(effects)
        self.changed.set()

    async def wait_for(self, predicate: Callable[[HealthEffect], bool]) -> HealthEffect:
        async def poll() -> HealthEffect:
            while True:
                for effect in self.effects:
                    if predicate(effect):
                        return effect
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(poll(), GUARD)


async def test_scheduler_takes_a_dead_server_out_of_the_pool_and_back_when_it_returns(http_server):
    http_server.replies["/"] = Reply()
    victim = HttpServer(replies={"/": Reply()})
    victim.server = await asyncio.start_server(victim.handle, LOCALHOST, 0)
    victim_port = victim.port
    endpoints = [Endpoint(address=LOCALHOST, port=p) for p in (http_server.port, victim_port)]
    spec = CheckerSpec(delay_loop=0.05, retry=1, delay_before_retry=0.05)
    vs = virtual_server_spec(endpoints, spec)
    monitor = HealthMonitor([vs])
    checks = {checker_id(e.port): http_check(e.port, connect_timeout=1.0) for e in endpoints}
    recorder = Recorder()
    scheduler = HealthScheduler(monitor, checks, recorder)
    scheduler.start()
    try:
        assert recorder.effects[0] == PoolChanged(
            virtual_server="vs",
            pool=Pool(real_servers=tuple(RealServer.at(e, 1) for e in endpoints)),
        )
        victim.server.close()
        await victim.server.wait_closed()
        down = await recorder.wait_for(lambda e: isinstance(e, ServerDown))
        assert down.server == endpoints[1]
        assert monitor.desired_pool("vs") == Pool(real_servers=(RealServer.at(endpoints[0], 1),))

        victim.server = await asyncio.start_server(victim.handle, LOCALHOST, victim_port)
        up = await recorder.wait_for(lambda e: isinstance(e, ServerUp))
        assert up.server == endpoints[1]
        assert [e.server for e in recorder.effects if isinstance(e, ServerDown)] == [endpoints[1]]
    finally:
        await scheduler.stop()
        victim.server.close()
    assert scheduler.checks_running == 0


class Exploding:
    async def run(self, checker: CheckerId) -> HealthEvent:
        raise RuntimeError("bug in a checker")


async def test_scheduler_reports_a_checker_that_raises_as_a_failed_check():
    server = Endpoint(address=LOCALHOST, port=1)
    vs = virtual_server_spec([server], CheckerSpec(retry=0, delay_loop=60))
    recorder = Recorder()
    scheduler = HealthScheduler(HealthMonitor([vs]), {checker_id(1): Exploding()}, recorder)
    scheduler.start()
    try:
        down = await recorder.wait_for(lambda e: isinstance(e, ServerDown))
        assert "bug in a checker" in down.reason
    finally:
        await scheduler.stop()


def test_scheduler_refuses_a_monitor_checker_without_an_implementation():
    server = Endpoint(address=LOCALHOST, port=1)
    vs = VirtualServerSpec(
        name="vs", real_servers=(RealServerSpec(server=server, checkers=(CheckerSpec(),)),)
    )
    with pytest.raises(ValueError, match="no checker configured"):
        HealthScheduler(HealthMonitor([vs]), {}, lambda effects: None)
