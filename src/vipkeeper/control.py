"""The control socket: how `vipkeeper status` and `vipkeeper reload` talk to a running daemon.

Owns the protocol (one definition of it: the default socket path, the version, the size limits,
the read deadline, the request and answer documents), the daemon's server and the CLI's client.
A connection carries one request and one answer, each a JSON object on one line:

    request  {"version": 1, "command": "status"}
    answer   {"version": 1, "ok": true, "result": {...}}
             {"version": 1, "ok": false, "error": {"code": "malformed", "message": "..."}}

Peers are checked with SO_PEERCRED: root and the daemon's own uid are served, anyone else gets
a `forbidden` answer. Each connection is its own task with a read deadline and a size limit,
and only MAX_CONNECTIONS are served at once, so a slow, half-open, oversized or garbage request
costs its sender an error answer (or a dropped connection) and never stalls the daemon's loop.
Must never: block the loop, raise out of a connection handler, or serve an unchecked peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vipkeeper.paths import DEFAULT_SOCKET

log = logging.getLogger("vipkeeper.control")

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 4096  # a request is a command name and a few arguments
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a status of thousands of real servers still fits
READ_DEADLINE = 2.0  # seconds a peer has to send its whole request
MAX_CONNECTIONS = 16  # served at once; more are answered `busy` and closed
CLIENT_TIMEOUT = 30.0  # seconds the CLI waits for an answer (a reload may stop instances)
SOCKET_MODE = 0o600

# Error codes of an answer with "ok": false (also the labels of the error counter).
MALFORMED = "malformed"  # not one JSON object with a string "command"
OVERSIZED = "oversized"  # longer than MAX_REQUEST_BYTES
TIMEOUT = "timeout"  # no complete request within READ_DEADLINE
VERSION = "unsupported_version"
UNKNOWN_COMMAND = "unknown_command"
FORBIDDEN = "forbidden"  # the peer is neither root nor the daemon's user
BUSY = "busy"  # MAX_CONNECTIONS already being served
INTERNAL = "internal"  # the command raised; the daemon logged it
ERROR_CODES = (MALFORMED, OVERSIZED, TIMEOUT, VERSION, UNKNOWN_COMMAND, FORBIDDEN, BUSY, INTERNAL)


class ControlError(Exception):
    """A request the daemon refused, or a daemon that could not be reached (code "unreachable")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    command: str
    arguments: Mapping[str, Any]


def encode_request(command: str, **arguments: Any) -> bytes:
    document = {"version": PROTOCOL_VERSION, "command": command, **arguments}
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Parse one request line; ControlError (malformed, oversized, unsupported_version) if bad."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ControlError(OVERSIZED, f"a request is at most {MAX_REQUEST_BYTES} bytes")
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ControlError(MALFORMED, "a request is a JSON object")
    version = document.pop("version", None)
    if version != PROTOCOL_VERSION:
        raise ControlError(VERSION, f"version must be {PROTOCOL_VERSION}, got {version!r}")
    command = document.pop("command", None)
    if not isinstance(command, str):
        raise ControlError(MALFORMED, 'a request needs a string "command"')
    return Request(command=command, arguments=document)


def encode_answer(result: Mapping[str, Any]) -> bytes:
    document = {"version": PROTOCOL_VERSION, "ok": True, "result": result}
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def encode_error(code: str, message: str) -> bytes:
    document = {
        "version": PROTOCOL_VERSION,
        "ok": False,
        "error": {"code": code, "message": message},
    }
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def decode_answer(line: bytes) -> dict[str, Any]:
    """The result of an answer line; ControlError with the daemon's code if it refused."""
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(MALFORMED, f"the daemon's answer is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != PROTOCOL_VERSION:
        raise ControlError(VERSION, "the daemon speaks another control protocol version")
    if document.get("ok") is True and isinstance(document.get("result"), dict):
        result: dict[str, Any] = document["result"]
        return result
    error = document.get("error")
    if isinstance(error, dict):
        raise ControlError(str(error.get("code")), str(error.get("message")))
    raise ControlError(MALFORMED, "the daemon's answer has neither result nor error")


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix stream socket (SO_PEERCRED)."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return int(uid)


Handler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


class ControlServer:
    """Serves `handlers` (command name -> coroutine function taking the request's arguments and
    returning the result object) on a Unix socket at `path`, on the running loop."""

    def __init__(
        self, path: str, handlers: Mapping[str, Handler], *, uid: int | None = None
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._uid = os.geteuid() if uid is None else uid
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors: Counter[str] = Counter()  # by error code
        self.served = 0

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        self._remove_stale()
        # The socket is created with no access for anyone but its owner, then listens.
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._accept, path=self.path, limit=MAX_REQUEST_BYTES + 1
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        log.info("control socket at %s", self.path)

    def _remove_stale(self) -> None:
        """A socket file left by a crashed run is removed; a live daemon's is not touched."""
        if not os.path.exists(self.path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)
            log.info("removed the stale control socket %s", self.path)
            return
        finally:
            probe.close()
        raise OSError(f"another daemon serves the control socket {self.path}")

    async def stop(self) -> None:
        """Stop serving and remove the socket file (only if this server created it)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader, writer)
            if answer is not None:
                writer.write(answer)
                async with asyncio.timeout(READ_DEADLINE):
                    await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the peer went away or stopped reading: nothing more to tell it
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(READ_DEADLINE):
                    await writer.wait_closed()

    def _refuse(self, code: str, message: str) -> bytes:
        self.errors[code] += 1
        return encode_error(code, message)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        if len(self._tasks) > MAX_CONNECTIONS:
            return self._refuse(BUSY, f"{MAX_CONNECTIONS} requests are being served; try again")
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else -1
        if uid not in (0, self._uid):
            log.warning("control socket: refused a request from uid %d", uid)
            return self._refuse(FORBIDDEN, f"uid {uid} may not use this socket")
        try:
            async with asyncio.timeout(READ_DEADLINE):
                line = await reader.readuntil(b"\n")
        except TimeoutError:
            return self._refuse(TIMEOUT, f"no complete request within {READ_DEADLINE:g} s")
        except asyncio.LimitOverrunError:
            return self._refuse(OVERSIZED, f"a request is at most {MAX_REQUEST_BYTES} bytes")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None  # connected and left without a word
            line = exc.partial  # no newline before the end: take what came
        try:
            request = decode_request(line)
        except ControlError as exc:
            return self._refuse(exc.code, exc.message)
        handler = self._handlers.get(request.command)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            return self._refuse(UNKNOWN_COMMAND, f"{request.command!r}; known: {known}")
        try:
            result = await handler(request.arguments)
        except ControlError as exc:
            return self._refuse(exc.code, exc.message)
        except Exception as exc:
            log.exception("control socket: %s failed", request.command)
            return self._refuse(INTERNAL, f"{request.command} failed: {exc!r}")
        self.served += 1
        return encode_answer(result)


def request(
    path: str, command: str, *, timeout: float = CLIENT_TIMEOUT, **arguments: Any
) -> dict[str, Any]:
    """Send one request to the daemon at `path` and return its result (blocking; for the CLI and
    for tools). ControlError: code "unreachable" if no daemon answers, else the daemon's code."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            # A stranger is refused before its request is read: the answer is still queued.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(encode_request(command, **arguments))
            chunks: list[bytes] = []
            size = 0
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ControlError(OVERSIZED, f"answer larger than {MAX_ANSWER_BYTES} bytes")
                if chunk.endswith(b"\n"):
                    break
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError("unreachable", f"no daemon at {path}: {exc.strerror}") from None
        except TimeoutError:
            raise ControlError(
                "unreachable", f"no answer from {path} within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise ControlError("unreachable", f"{path}: {exc}") from None
    if not chunks:
        raise ControlError("unreachable", f"{path} closed the connection without an answer")
    return decode_answer(b"".join(chunks))


def read_status(path: str = DEFAULT_SOCKET, *, timeout: float = CLIENT_TIMEOUT) -> dict[str, Any]:
    """The running daemon's status document (the format of docs/status.schema.json)."""
    return request(path, "status", timeout=timeout)
