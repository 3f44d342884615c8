"""Notify FIFOs: keepalived's line format, the global_defs keywords, and the writer on real FIFOs
(a tmp directory, no root needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vipkeeper.config import parse_text
from vipkeeper.config.diagnostics import Location
from vipkeeper.config.lvs_model import VirtualServer
from vipkeeper.config.model import Command, NotifyFifo, Protocol
from vipkeeper.io.notify_fifo import (
    NotifyFifo as FifoWriter,
)
from vipkeeper.io.notify_fifo import (
    NotifyFifos,
    real_server_line,
    virtual_server_line,
    vrrp_line,
)
from vipkeeper.io.scripts import ScriptRunner
from vipkeeper.testing.waits import wait_for

HERE = Location(file="test.conf", line=1, column=1)


def vs(**fields: object) -> VirtualServer:
    return VirtualServer(location=HERE, **fields)  # type: ignore[arg-type]


# -- the line format (keepalived.conf(5), global_defs) ---------------------------------------------


def test_instance_and_group_lines_are_keepalived_s() -> None:
    line = vrrp_line(kind="INSTANCE", name="VI_1", state="MASTER", priority=100)
    assert line == 'INSTANCE "VI_1" MASTER 100\n'
    assert vrrp_line(kind="GROUP", name="VG 1", state="STOP", priority=0) == 'GROUP "VG 1" STOP 0\n'


def test_virtual_and_real_server_lines_are_keepalived_s() -> None:
    web = vs(address="192.168.201.15", port=80, protocol=Protocol.TCP)
    assert virtual_server_line(web, up=True) == "VS [192.168.201.15]:tcp:80 UP\n"
    assert (
        real_server_line(web, "1.2.3.4", 80, up=False)
        == "RS [1.2.3.4]:tcp:80 [192.168.201.15]:tcp:80 DOWN\n"
    )
    dns = vs(address="fd00::1", port=53, protocol=Protocol.UDP)
    assert virtual_server_line(dns, up=False) == "VS [fd00::1]:udp:53 DOWN\n"
    marked = vs(fwmark=7)
    assert real_server_line(marked, "10.0.1.1", 443, up=True) == "RS [10.0.1.1]:tcp:443 FWM 7 UP\n"


# -- configuration ---------------------------------------------------------------------------------


def test_fifos_and_their_scripts_are_read_from_global_defs() -> None:
    result = parse_text(
        "global_defs {\n"
        "  notify_fifo /run/vk/all\n"
        '  notify_fifo_script "/usr/bin/reader --all"\n'
        "  vrrp_notify_fifo /run/vk/vrrp\n"
        "  lvs_notify_fifo /run/vk/lvs\n"
        "  lvs_notify_fifo_script /usr/bin/lvs-reader\n"
        "}\n"
    )
    assert result.config is not None, result.diagnostics
    assert not result.diagnostics, [d.format() for d in result.diagnostics]
    defs = result.config.global_defs
    assert defs.notify_fifo is not None and defs.notify_fifo.path == "/run/vk/all"
    assert defs.notify_fifo.script is not None
    assert defs.notify_fifo.script.argv == ("/usr/bin/reader", "--all")
    assert defs.vrrp_notify_fifo is not None and defs.vrrp_notify_fifo.script is None
    assert defs.lvs_notify_fifo is not None and defs.lvs_notify_fifo.script is not None
    assert defs.lvs_notify_fifo.script.argv == ("/usr/bin/lvs-reader",)


@pytest.mark.parametrize(
    ("text", "severity", "column", "words"),
    [
        ("notify_fifo relative/path", "error", 15, "not an absolute path"),
        ("vrrp_notify_fifo /a\n  lvs_notify_fifo /a", "error", 3, "each FIFO needs its own"),
        ("notify_fifo /a keepalived", "warning", 18, "owner ignored"),
        ("lvs_notify_fifo_script /bin/true", "warning", 3, "no lvs_notify_fifo to read"),
        ("fifo_write_vrrp_states_on_reload", "warning", 3, "ignored"),
    ],
)
def test_fifo_mistakes_are_located(text: str, severity: str, column: int, words: str) -> None:
    result = parse_text(f"global_defs {{\n  {text}\n}}\n")
    found = [d for d in result.diagnostics if d.severity.value == severity and words in d.message]
    assert found, [d.format() for d in result.diagnostics]
    assert found[0].location.column == column


# -- the writer on real FIFOs ----------------------------------------------------------------------


def spec(path: Path, script: tuple[str, ...] | None = None) -> NotifyFifo:
    command = Command(argv=script, location=HERE) if script is not None else None
    return NotifyFifo(path=str(path), script=command, location=HERE)


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks).decode()
        if not chunk:
            return b"".join(chunks).decode()
        chunks.append(chunk)


async def test_a_missing_fifo_is_created_written_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    fifo = FifoWriter(spec(path), ScriptRunner())
    assert await fifo.open()
    assert stat.S_ISFIFO(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0  # nobody else reads it
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fifo.write('INSTANCE "VI_1" BACKUP 100\n')
        fifo.write('INSTANCE "VI_1" MASTER 100\n')
        assert read_all(reader) == 'INSTANCE "VI_1" BACKUP 100\nINSTANCE "VI_1" MASTER 100\n'
    finally:
        os.close(reader)
        await fifo.close()
    assert not path.exists()  # it created it, so it removes it


async def test_an_existing_fifo_is_used_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    os.mkfifo(path, 0o640)
    fifo = FifoWriter(spec(path), ScriptRunner())
    assert await fifo.open()
    await fifo.close()
    assert stat.S_ISFIFO(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o640


async def test_a_regular_file_is_never_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notify"
    path.write_text("precious\n")
    fifo = FifoWriter(spec(path), ScriptRunner())
    assert not await fifo.open()
    fifo.write("VS [10.0.0.1]:tcp:80 UP\n")
    await fifo.close()
    assert path.read_text() == "precious\n"
    assert any("not a FIFO" in r.message for r in caplog.records)


async def test_a_fifo_nobody_reads_drops_lines_instead_of_blocking(tmp_path: Path) -> None:
    fifo = FifoWriter(spec(tmp_path / "notify"), ScriptRunner())
    assert await fifo.open()
    line = 'INSTANCE "' + "x" * 200 + '" MASTER 100\n'
    try:
        for _ in range(2000):  # far more than a pipe buffer holds
            fifo.write(line)
    finally:
        await fifo.close()
    assert fifo.written > 0
    assert fifo.dropped > 0
    assert fifo.written + fifo.dropped == 2000


async def test_the_script_reads_the_fifo_named_as_its_last_argument(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    out = tmp_path / "read.txt"
    script = ("/bin/sh", "-c", f'cat "$1" > {out}', "reader")
    fifo = FifoWriter(spec(path, script), ScriptRunner())
    assert await fifo.open()
    fifo.write('GROUP "VG_1" MASTER 0\n')
    fifo.write("RS [192.168.0.54]:tcp:80 [172.16.9.1]:tcp:80 DOWN\n")
    await wait_for(lambda: out.exists() and out.read_text().count("\n") == 2)
    await fifo.close()  # the reader gets end of file and exits by itself
    assert out.read_text() == (
        'GROUP "VG_1" MASTER 0\nRS [192.168.0.54]:tcp:80 [172.16.9.1]:tcp:80 DOWN\n'
    )
    assert not path.exists()


async def test_lines_go_to_the_fifos_that_take_them(tmp_path: Path) -> None:
    result = parse_text(
        "global_defs {\n"
        f"  notify_fifo {tmp_path}/all\n"
        f"  vrrp_notify_fifo {tmp_path}/vrrp\n"
        f"  lvs_notify_fifo {tmp_path}/lvs\n"
        "}\n"
    )
    assert result.config is not None
    fifos = NotifyFifos(result.config.global_defs, ScriptRunner())
    await fifos.open()
    readers = {
        name: os.open(tmp_path / name, os.O_RDONLY | os.O_NONBLOCK)
        for name in ("all", "vrrp", "lvs")
    }
    web = vs(address="10.0.0.1", port=80)
    try:
        fifos.vrrp(kind="INSTANCE", name="VI_1", state="MASTER", priority=150)
        fifos.real_server(web, "10.0.1.1", 80, up=False)
        fifos.virtual_server(web, up=False)
        seen = {name: read_all(fd) for name, fd in readers.items()}
    finally:
        for fd in readers.values():
            os.close(fd)
        await fifos.close()
    vrrp = 'INSTANCE "VI_1" MASTER 150\n'
    lvs = "RS [10.0.1.1]:tcp:80 [10.0.0.1]:tcp:80 DOWN\nVS [10.0.0.1]:tcp:80 DOWN\n"
    assert seen == {"all": vrrp + lvs, "vrrp": vrrp, "lvs": lvs}


async def test_reload_reopens_only_changed_fifos(tmp_path: Path) -> None:
    def defs(vrrp_path: str) -> object:
        result = parse_text(
            f"global_defs {{\n  notify_fifo {tmp_path}/all\n  vrrp_notify_fifo {vrrp_path}\n}}\n"
        )
        assert result.config is not None
        return result.config.global_defs

    fifos = NotifyFifos(defs(f"{tmp_path}/one"), ScriptRunner())  # type: ignore[arg-type]
    await fifos.open()
    kept = fifos.fifo("notify_fifo")
    await fifos.reconfigure(defs(f"{tmp_path}/two"))  # type: ignore[arg-type]
    try:
        assert fifos.fifo("notify_fifo") is kept
        moved = fifos.fifo("vrrp_notify_fifo")
        assert moved is not None and moved.path == f"{tmp_path}/two"
        assert not (tmp_path / "one").exists()
        assert stat.S_ISFIFO((tmp_path / "two").lstat().st_mode)
    finally:
        await fifos.close()
