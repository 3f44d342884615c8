"""The inventory's client host as the harness's probes expect a lab: commands over SSH.

harness.probes.HttpProber asks its lab for `exec`, `exec_detached`, `put_file` and a topology
naming the client, the VIP and its port; this class gives them over a testinfra host
(`ansible://`), so the prober runs on any inventory's client, not only in a container.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Any

from harness.lab import ExecResult, LabError


@dataclass(frozen=True)
class _Node:
    name: str


@dataclass(frozen=True)
class ClientTopology:
    client: _Node
    vip: str
    vip_port: int


class InventoryClient:
    def __init__(self, name: str, host: Any, *, vip: str, vip_port: int) -> None:
        self.host = host
        self.topology = ClientTopology(client=_Node(name), vip=vip, vip_port=vip_port)

    def _check(self, service: str) -> None:
        if service != self.topology.client.name:
            raise LabError(f"{service}: only the client {self.topology.client.name} is reachable")

    def exec(
        self, service: str, cmd: list[str] | str, *, timeout: float | None = 30, check: bool = False
    ) -> ExecResult:
        self._check(service)
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if timeout is not None:
            argv = ["timeout", "-s", "KILL", f"{timeout:g}", *argv]
        out = self.host.run(shlex.join(argv))
        result = ExecResult(exit_code=out.rc, output=out.stdout + out.stderr)
        if check and not result.ok:
            raise LabError(f"{service}: {argv!r} exited {result.exit_code}: {result.output}")
        return result

    def exec_detached(self, service: str, cmd: list[str]) -> None:
        self._check(service)
        self.host.run(f"setsid -f {shlex.join(cmd)} </dev/null >/dev/null 2>&1")

    def put_file(self, service: str, path: str, data: bytes, mode: int = 0o644) -> None:
        self._check(service)
        encoded = base64.b64encode(data).decode()
        quoted = shlex.quote(path)
        self.host.run_expect(
            [0], f"echo {encoded} | base64 -d >{quoted} && chmod {mode:o} {quoted}"
        )
