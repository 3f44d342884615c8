"""The control socket's protocol and server, on a real Unix socket in a temporary directory.

Proves: requests and answers round-trip through the codec with the protocol version; garbage,
an unknown version, a missing command and an oversized request each get their own error code
(and are counted); an unknown command is answered with the known ones; a command that raises
is answered `internal` and the server keeps serving; a half-open connection that never sends a
whole request does not delay another client, and is answered `timeout` after the read deadline;
the socket file is mode 0600, a stale one is replaced at start and the file is gone after stop;
a live daemon's socket is never taken over; the blocking client reports a missing daemon as
`unreachable`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from vipkeeper import control
from vipkeeper.control import ControlError, ControlServer


def test_request_round_trip() -> None:
    line = control.encode_request("status", verbose=True)
    assert line.endswith(b"\n")
    request = control.decode_request(line)
    assert request.command == "status"
    assert request.arguments == {"verbose": True}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\x00\xffgarbage\n", control.MALFORMED),
        (b"[1, 2]\n", control.MALFORMED),
        (b'{"version": 1}\n', control.MALFORMED),
        (b'{"version": 99, "command": "status"}\n', control.VERSION),
        (b'{"command": "status"}\n', control.VERSION),
        (
            b'{"version": 1, "command": "' + b"x" * control.MAX_REQUEST_BYTES + b'"}\n',
            control.OVERSIZED,
        ),
    ],
)
def test_bad_requests_are_refused_with_their_code(line: bytes, code: str) -> None:
    with pytest.raises(ControlError) as caught:
        control.decode_request(line)
    assert caught.value.code == code


def test_answers_round_trip_and_errors_raise() -> None:
    assert control.decode_answer(control.encode_answer({"a": 1})) == {"a": 1}
    with pytest.raises(ControlError) as caught:
        control.decode_answer(control.encode_error(control.FORBIDDEN, "no"))
    assert (caught.value.code, caught.value.message) == (control.FORBIDDEN, "no")


async def _echo(arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"echo": dict(arguments)}


async def _broken(_arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    raise RuntimeError("boom")


async def _exchange(path: str, payload: bytes, *, close_write: bool = True) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(payload)
    await writer.drain()
    if close_write:
        writer.write_eof()
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    document: dict[str, Any] = json.loads(line)
    return document


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    path = str(tmp_path / "run" / "vipkeeper.sock")
    served = ControlServer(path, {"echo": _echo, "broken": _broken})
    await served.start()
    yield served
    await served.stop()


async def test_a_request_is_answered(server: ControlServer) -> None:
    answer = await _exchange(server.path, control.encode_request("echo", x=1))
    assert answer == {"version": 1, "ok": True, "result": {"echo": {"x": 1}}}
    assert server.served == 1


async def test_bad_requests_get_error_answers_and_are_counted(server: ControlServer) -> None:
    garbage = await _exchange(server.path, b"\x16\x03\x01 not json\n")
    oversized = await _exchange(server.path, b"{" + b" " * (2 * control.MAX_REQUEST_BYTES))
    unknown = await _exchange(server.path, control.encode_request("launch"))
    broken = await _exchange(server.path, control.encode_request("broken"))
    assert garbage["error"]["code"] == control.MALFORMED
    assert oversized["error"]["code"] == control.OVERSIZED
    assert unknown["error"]["code"] == control.UNKNOWN_COMMAND
    assert "echo" in unknown["error"]["message"]
    assert broken["error"]["code"] == control.INTERNAL
    assert all(not a["ok"] for a in (garbage, oversized, unknown, broken))
    assert server.errors == {
        control.MALFORMED: 1,
        control.OVERSIZED: 1,
        control.UNKNOWN_COMMAND: 1,
        control.INTERNAL: 1,
    }
    # and it still serves
    assert (await _exchange(server.path, control.encode_request("echo")))["ok"]


async def test_half_open_connection_does_not_delay_others(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "READ_DEADLINE", 1.0)
    reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write(b'{"version": 1, "comm')  # and never the rest
    await writer.drain()
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await _exchange(server.path, control.encode_request("echo"))
    served_in = loop.time() - started
    assert answer["ok"]
    assert served_in < control.READ_DEADLINE, "the second client waited for the first"
    stalled = json.loads(await asyncio.wait_for(reader.readline(), 10))
    assert stalled["error"]["code"] == control.TIMEOUT
    writer.close()
    assert server.errors[control.TIMEOUT] == 1


async def test_socket_file_is_private_and_removed_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "vk.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a crashed run leaves behind
    stale.close()
    served = ControlServer(str(path), {"echo": _echo})
    await served.start()
    assert stat.S_IMODE(os.stat(path).st_mode) == control.SOCKET_MODE
    assert (await _exchange(str(path), control.encode_request("echo")))["ok"]
    await served.stop()
    assert not path.exists()


async def test_a_live_daemons_socket_is_not_taken_over(server: ControlServer) -> None:
    second = ControlServer(server.path, {"echo": _echo})
    with pytest.raises(OSError, match="another daemon"):
        await second.start()
    await second.stop()  # it never served: the first daemon's file stays
    assert os.path.exists(server.path)


def test_client_reports_a_missing_daemon(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as caught:
        control.request(str(tmp_path / "absent.sock"), "status", timeout=2)
    assert caught.value.code == "unreachable"
