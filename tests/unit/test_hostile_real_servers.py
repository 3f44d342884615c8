"""Real servers that misbehave, thousands of times over: a server that accepts and never
answers, one that drips a byte per second, one that answers garbage, one that sends more than
the response limit, one that resets, one that half-closes without answering. Every check fails,
with its reason or at its connect_timeout, and after all of them this process holds exactly
the file descriptors it held before (no socket, timer or poller registration left behind).
HOSTILE_CHECKS sets how many checks (3,000 by default; `HOSTILE_CHECKS=10000` for the long run).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable

from vipkeeper.core.health import CheckerId, CheckFailed, Endpoint
from vipkeeper.io import http_response
from vipkeeper.io.checkers import HttpGetCheck, UrlCheck

LOCALHOST = "127.0.0.1"
CHECKS = int(os.environ.get("HOSTILE_CHECKS", "3000"))  # over all six behaviours
BATCH = 120  # checks in flight at once
TIMEOUT = 0.5  # connect_timeout of every check
LIMIT = 64 * 1024  # the response limit for this test (the real one is 16 MiB)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def open_fds() -> set[tuple[str, str]]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            fds.add((name, os.readlink(f"/proc/self/fd/{name}")))
    return fds


async def _request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    await reader.read()  # until the checker gives up and closes


async def drips(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    for byte in b"HTTP/1.1 200 OK\r\n\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1.0)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    writer.write(b"\x00\xffnot http at all\r\n\r\n")
    await writer.drain()


async def too_much(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    writer.write(b"HTTP/1.0 200 OK\r\n\r\n")
    for _ in range(16):
        writer.write(b"x" * (LIMIT // 4))
        await writer.drain()


async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def half_closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    writer.write_eof()
    await reader.read()


BEHAVIOURS: dict[str, tuple[Handler, str]] = {
    "never answers": (never_answers, "no answer within connect_timeout"),
    "drips": (drips, "no answer within connect_timeout"),
    "garbage": (garbage, "malformed status line"),
    "too much": (too_much, "response body too large"),
    "resets": (resets, "Connection reset by peer"),
    "half-closes": (half_closes, "connection closed before the response headers"),
}


_handlers: set[asyncio.Task[None]] = set()


def _guarded(handler: Handler) -> Handler:
    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        _handlers.add(task)
        task.add_done_callback(_handlers.discard)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the checker closed first (that is the point), or the test ended
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return run


async def test_misbehaving_servers_fail_every_check_and_leak_nothing(monkeypatch) -> None:
    monkeypatch.setattr(http_response, "MAX_RESPONSE_BYTES", LIMIT)
    before = open_fds()
    servers = {}
    for name, (handler, _reason) in BEHAVIOURS.items():
        servers[name] = await asyncio.start_server(_guarded(handler), LOCALHOST, 0, backlog=1024)
    # A digest makes the checker read the body, so "too much" meets the limit.
    url = UrlCheck(digest=hashlib.md5(b"").hexdigest())
    plan = []
    for name, server in servers.items():
        port = int(server.sockets[0].getsockname()[1])
        check = HttpGetCheck(address=LOCALHOST, port=port, urls=(url,), connect_timeout=TIMEOUT)
        endpoint = Endpoint(address=LOCALHOST, port=port)
        plan.append((name, check, CheckerId(virtual_server="vs", server=endpoint, index=0)))
    outcomes: Counter[tuple[str, str]] = Counter()
    done = 0
    while done < CHECKS:
        batch = [plan[(done + i) % len(plan)] for i in range(min(BATCH, CHECKS - done))]
        results = await asyncio.gather(*(check.run(ident) for _n, check, ident in batch))
        for (name, _check, _ident), result in zip(batch, results, strict=True):
            assert isinstance(result, CheckFailed), (name, result)
            kinds = (BEHAVIOURS[name][1], BEHAVIOURS["never answers"][1])
            kind = next((k for k in kinds if k in result.reason), result.reason)
            outcomes[(name, kind)] += 1
        done += len(batch)
    for server in servers.values():
        server.close()
        await server.wait_closed()
    # The servers' side (a drip may still be asleep) is closed before counting: what must not
    # stay is the checker's side.
    for task in list(_handlers):
        task.cancel()
    await asyncio.gather(*_handlers, return_exceptions=True)
    # A fast failure may still meet the deadline when this shared machine stalls the loop
    # (servers and checkers share it); anything but its own reason or the deadline is wrong,
    # and its own reason must dominate, which shows the server misbehaved as intended.
    timeout = BEHAVIOURS["never answers"][1]
    wrong = {k: n for k, n in outcomes.items() if k[1] not in (BEHAVIOURS[k[0]][1], timeout)}
    assert not wrong, wrong
    for name, (_handler, reason) in BEHAVIOURS.items():
        own = outcomes[(name, reason)]
        assert own >= CHECKS // len(BEHAVIOURS) // 2, (name, dict(outcomes))
    assert sum(outcomes.values()) == CHECKS
    leaked = open_fds() - before
    assert not leaked, f"{len(leaked)} descriptors left after {CHECKS} checks: {sorted(leaked)[:5]}"
