"""keepalived's notify FIFOs: one line per VRRP or LVS event, in keepalived's own format, so the
tools that read keepalived's FIFOs read vipkeeper's unchanged.

    INSTANCE "VI_1" MASTER 100          a vrrp_instance entered MASTER/BACKUP/FAULT/STOP, with
    GROUP "VG_1" BACKUP 0               its effective priority (a sync group's is always 0)
    VS [10.0.0.1]:tcp:80 UP             a virtual server gained (UP) or lost (DOWN) its quorum
    RS [192.168.0.5]:tcp:80 [10.0.0.1]:tcp:80 DOWN     a real server of it went up or down

`notify_fifo` gets every line, `vrrp_notify_fifo` the INSTANCE/GROUP lines, `lvs_notify_fifo`
the VS/RS lines (keepalived.conf(5)).

Owns: creating a FIFO that does not exist (and removing only a FIFO it created), starting the
optional `*_fifo_script` with the FIFO's path as its last argument through the one script
runner, writing lines, and stopping the script at the end. The FIFO is opened read-write and
non-blocking, as keepalived does: opening never waits for a reader, a line written while no
reader drains the FIFO stays in the kernel's buffer, and a full buffer drops the line (counted
and logged) instead of stalling the daemon.

Must never: block the event loop, or fail the daemon because a FIFO cannot be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vipkeeper.config import model
from vipkeeper.io.scripts import ScriptRunner

if TYPE_CHECKING:  # loaded with the first virtual_server block
    from vipkeeper.config import lvs_model

log = logging.getLogger("vipkeeper")

# Seconds a FIFO's script may take to finish by itself once the FIFO is closed (it reads the
# last lines, then end of file) before it is sent SIGTERM, and then before SIGKILL.
READER_PATIENCE = 1.0
READER_GRACE = 2.0


# -- the line format ----------------------------------------------------------------------


def vrrp_line(*, kind: str, name: str, state: str, priority: int) -> str:
    """`INSTANCE "VI_1" MASTER 100`: what keepalived writes for a vrrp_instance (kind
    INSTANCE) or a vrrp_sync_group (kind GROUP, priority 0)."""
    return f'{kind} "{name}" {state} {priority}\n'


def endpoint_text(address: str, protocol: model.Protocol, port: int) -> str:
    """keepalived's `[ADDRESS]:PROTO:PORT`, brackets for IPv4 and IPv6 alike."""
    return f"[{address}]:{protocol.value.lower()}:{port}"


def virtual_server_text(vs: lvs_model.VirtualServer) -> str:
    if vs.fwmark is not None:
        return f"FWM {vs.fwmark}"
    assert vs.address is not None and vs.port is not None
    return endpoint_text(vs.address, vs.protocol, vs.port)


def virtual_server_line(vs: lvs_model.VirtualServer, *, up: bool) -> str:
    return f"VS {virtual_server_text(vs)} {_up(up)}\n"


def real_server_line(vs: lvs_model.VirtualServer, address: str, port: int, *, up: bool) -> str:
    rs = endpoint_text(address, vs.protocol, port)
    return f"RS {rs} {virtual_server_text(vs)} {_up(up)}\n"


def _up(up: bool) -> str:
    return "UP" if up else "DOWN"


# -- one FIFO ---------------------------------------------------------------------------------


class NotifyFifo:
    """One configured FIFO and its optional reader script."""

    def __init__(self, spec: model.NotifyFifo, runner: ScriptRunner) -> None:
        self.spec = spec
        self._runner = runner
        self._fd: int | None = None
        self._created = False
        self._reader: asyncio.subprocess.Process | None = None
        self._full = False
        self.written = 0
        self.dropped = 0

    @property
    def path(self) -> str:
        return self.spec.path

    async def open(self) -> bool:
        """Create the FIFO if needed, start its script, open it; False (logged) if unusable."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            try:
                os.mkfifo(self.path, 0o600)
            except OSError as exc:
                log.error("notify FIFO %s cannot be created: %s", self.path, exc)
                return False
            self._created = True
        except OSError as exc:
            log.error("notify FIFO %s: %s", self.path, exc)
            return False
        else:
            if not stat.S_ISFIFO(mode):
                log.error("notify FIFO %s exists and is not a FIFO; nothing is written", self.path)
                return False
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            log.error("notify FIFO %s cannot be opened: %s", self.path, exc)
            self._remove()
            return False
        if self.spec.script is not None:
            self._reader = await self._runner.start_helper(self.spec.script.argv, args=(self.path,))
        log.info("notify FIFO %s open", self.path)
        return True

    def write(self, line: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, line.encode())  # one line < PIPE_BUF: written whole or not at all
        except BlockingIOError:
            self.dropped += 1
            if not self._full:
                self._full = True
                log.warning("notify FIFO %s is full (nobody reads it): lines dropped", self.path)
            return
        except OSError as exc:
            self.dropped += 1
            log.warning("notify FIFO %s: %s", self.path, exc)
            return
        self.written += 1
        self._full = False

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._reader is not None:
            # Closed, the FIFO gives its reader the last lines and then end of file.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READER_PATIENCE):
                    await self._reader.wait()
            await ScriptRunner.stop_helper(self._reader, READER_GRACE)
            self._reader = None
        self._remove()

    def _remove(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._created = False


# -- the configured set -------------------------------------------------------------------


class NotifyFifos:
    """The FIFOs of one configuration's global_defs, and which lines each one gets."""

    def __init__(self, global_defs: model.GlobalDefs, runner: ScriptRunner) -> None:
        self._runner = runner
        self._specs = _specs(global_defs)
        self._open: dict[str, NotifyFifo] = {}

    async def open(self) -> None:
        for name, spec in self._specs.items():
            fifo = NotifyFifo(spec, self._runner)
            if await fifo.open():
                self._open[name] = fifo

    async def close(self) -> None:
        for fifo in self._open.values():
            await fifo.close()
        self._open.clear()

    async def reconfigure(self, global_defs: model.GlobalDefs) -> None:
        """Apply a reloaded configuration: FIFOs whose settings changed are closed and opened
        again, unchanged ones keep their reader."""
        specs = _specs(global_defs)
        for name in list(self._open):
            if specs.get(name) != self._open[name].spec:  # locations are not compared
                await self._open.pop(name).close()
        for name, spec in specs.items():
            if name not in self._open:
                fifo = NotifyFifo(spec, self._runner)
                if await fifo.open():
                    self._open[name] = fifo
        self._specs = specs

    def fifo(self, name: str) -> NotifyFifo | None:
        return self._open.get(name)

    def vrrp(self, *, kind: str, name: str, state: str, priority: int) -> None:
        self._write(
            ("notify_fifo", "vrrp_notify_fifo"),
            vrrp_line(kind=kind, name=name, state=state, priority=priority),
        )

    def virtual_server(self, vs: lvs_model.VirtualServer, *, up: bool) -> None:
        self._write(("notify_fifo", "lvs_notify_fifo"), virtual_server_line(vs, up=up))

    def real_server(
        self, vs: lvs_model.VirtualServer, address: str, port: int, *, up: bool
    ) -> None:
        self._write(("notify_fifo", "lvs_notify_fifo"), real_server_line(vs, address, port, up=up))

    def _write(self, names: Sequence[str], line: str) -> None:
        for name in names:
            fifo = self._open.get(name)
            if fifo is not None:
                fifo.write(line)


def _specs(global_defs: model.GlobalDefs) -> dict[str, model.NotifyFifo]:
    found = {name: getattr(global_defs, name) for name in model.NOTIFY_FIFOS}
    return {name: spec for name, spec in found.items() if spec is not None}
