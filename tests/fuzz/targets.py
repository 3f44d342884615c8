"""Fuzz targets: every parser that reads bytes from outside, and the errors each may raise.

What this owns: one function per parser that takes fuzz bytes, drives the parser as the daemon
does, and lets through only the parser's own typed error (or nothing). Anything else escaping
a target is a finding. The coverage-guided runner (tests/fuzz/run.py, atheris, `make fuzz`)
and the short Hypothesis run in the unit suite (tests/unit/test_fuzz_targets.py) call the same
functions, so every finding replays as a unit test.

    vrrp      core.vrrp_wire.decode: WireError only. The first byte picks IPv4 or IPv6 and
              whether the checksum is made right first (so mutations reach past it).
    config    config.load.parse_text (lexer, parser, includes, builder, validation): never
              raises, answers with diagnostics. Includes resolve inside a sandbox directory
              of sample files; paths outside it are refused like missing files.
    http      io.http_response's response reader, fed in pieces then closed: CheckError only,
              and never holds more than MAX_RESPONSE_BYTES.

There is no ARP or neighbour-advertisement decoder: vipkeeper only sends those.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from vipkeeper.config import parser
from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.config.load import LoadResult, parse_text
from vipkeeper.core import vrrp_wire
from vipkeeper.io import http_response

V4 = ("10.0.0.1", "224.0.0.18")
V6 = ("fe80::1", "ff02::12")


def _fix_checksum(payload: bytes, source: str, destination: str, version: int) -> bytes:
    if len(payload) < 8:
        return payload
    zeroed = payload[:6] + b"\0\0" + payload[8:]
    covered = zeroed
    if version == 3:
        covered = vrrp_wire._pseudo_header(source, destination, len(zeroed)) + zeroed
    checksum = vrrp_wire.internet_checksum(covered)
    return zeroed[:6] + struct.pack("!H", checksum) + zeroed[8:]


def vrrp(data: bytes) -> None:
    if not data:
        return
    control, payload = data[0], data[1:]
    source, destination = V6 if control & 1 else V4
    if control & 2:
        payload = _fix_checksum(payload, source, destination, payload[0] >> 4 if payload else 2)
    with contextlib.suppress(vrrp_wire.WireError):
        vrrp_wire.decode(payload, source=source, destination=destination)


# -- config -----------------------------------------------------------------------------------

_SANDBOX = Path(tempfile.mkdtemp(prefix="vipkeeper-fuzz-"))
atexit.register(shutil.rmtree, _SANDBOX, ignore_errors=True)
(_SANDBOX / "conf.d").mkdir()
(_SANDBOX / "conf.d" / "a.conf").write_text("vrrp_script chk {\n    script /bin/true\n}\n")
(_SANDBOX / "conf.d" / "b.conf").write_text("global_defs {\n    router_id fuzz\n}\n")
(_SANDBOX / "loop.conf").write_text("include loop.conf\n")
_real_read_source = parser.read_source
_real_glob_paths = parser._glob_paths


def _inside(path: str) -> bool:
    return os.path.realpath(path).startswith(str(_SANDBOX) + os.sep)


def _sandboxed_read(path: str, diagnostics: Diagnostics, where: Location | None) -> str | None:
    if not _inside(path):
        at = where if where is not None else Location(file=path, line=0, column=0)
        diagnostics.error(at, f"cannot read {path}: outside the fuzz sandbox")
        return None
    return _real_read_source(path, diagnostics, where)


def _sandboxed_glob(pattern: str) -> list[str]:
    if not _inside(pattern.split("*")[0].split("?")[0].split("[")[0].split("{")[0] or "."):
        return []
    return [path for path in _real_glob_paths(pattern) if _inside(path)]


def config(data: bytes) -> None:
    # The sandbox replaces file access for the whole fuzzing process (a fuzz process runs
    # nothing else); the unit test restores it afterwards.
    parser.read_source = _sandboxed_read
    parser._glob_paths = _sandboxed_glob
    result = parse_text(data.decode("utf-8", errors="replace"), str(_SANDBOX / "keepalived.conf"))
    assert isinstance(result, LoadResult)
    assert (result.config is None) == bool(result.errors), "errors and a config together"


def restore_file_access() -> None:
    parser.read_source = _real_read_source
    parser._glob_paths = _real_glob_paths


# -- HTTP -----------------------------------------------------------------------------------


def http(data: bytes) -> None:
    if len(data) < 2:
        return
    need_body = bool(data[0] & 1)
    piece = 1 + data[1] % 64  # how recv splits the response
    body = data[2:]
    reader = http_response.ResponseReader(need_body=need_body)
    try:
        for start in range(0, len(body), piece):
            if reader.feed(body[start : start + piece]):
                break
        else:
            reader.feed(b"")
    except http_response.CheckError:
        return
    held = len(reader._body or b"") + len(reader._head or b"")
    assert held <= http_response.MAX_RESPONSE_BYTES + piece, f"held {held} bytes"


TARGETS: dict[str, Callable[[bytes], None]] = {"vrrp": vrrp, "config": config, "http": http}
