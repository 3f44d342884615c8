"""The typed configuration model of the LVS half: `virtual_server` blocks, their real and
sorry servers and their checkers, as `config.model` describes its objects (frozen, keyword-only,
values converted, defaults resolved, locations kept out of comparisons).

Kept apart from `config.model` so that a configuration without virtual servers never creates
these classes: they load with the first `virtual_server` block (bench/startup.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import field

from vipkeeper.config.diagnostics import Location
from vipkeeper.config.model import Command, LvsMethod, LvsScheduler, Protocol
from vipkeeper.core.endpoint import Endpoint
from vipkeeper.core.records import record


@record
class HttpUrl:
    """One `url { }` of an HTTP_GET check. Success: status in a range and, if set, digest."""

    path: str
    status_codes: tuple[tuple[int, int], ...] = ((200, 299),)  # inclusive ranges
    digest: str | None = None  # lower-case hex MD5 of the body
    virtualhost: str | None = None  # resolved: url, checker, real server, virtual server
    location: Location = field(compare=False)


@record
class CheckTiming:
    """What every checker block has: its retries and timers (a checker's own default
    overrides a field here by declaring it again)."""

    retry: int = 1
    delay_before_retry: float = 1.0
    delay_loop: float = 60.0
    location: Location = field(compare=False)


@record
class ConnectCheck(CheckTiming):
    """A checker that connects to the real server, or to `connect_ip` / `connect_port`."""

    connect_ip: str | None = None  # None: the real server's address
    connect_port: int | None = None  # None: the real server's port
    connect_timeout: float = 5.0


@record
class HttpGetCheck(ConnectCheck):
    """`HTTP_GET`: up when every url answers as configured."""

    urls: tuple[HttpUrl, ...]
    delay_before_retry: float = 3.0


class TcpCheck(ConnectCheck):
    """`TCP_CHECK`: up when the connection is accepted."""


@record
class MiscCheck(CheckTiming):
    """Run a program; exit 0 is up. With `misc_dynamic`, exit 2..255 sets weight to status-2."""

    command: Command
    misc_timeout: float | None = None  # None: delay_loop
    misc_dynamic: bool = False
    retry: int = 0


Checker = HttpGetCheck | TcpCheck | MiscCheck

# A checker as keepalived.conf names it.
CHECKER_KEYWORDS: dict[type, str] = {
    HttpGetCheck: "HTTP_GET",
    TcpCheck: "TCP_CHECK",
    MiscCheck: "MISC_CHECK",
}


@record
class RealServer:
    """`real_server IP PORT` of a virtual server, with its checkers."""

    address: str
    port: int | None  # None only for fwmark virtual servers without a port
    weight: int = 1
    inhibit_on_failure: bool = False
    notify_up: Command | None = None
    notify_down: Command | None = None
    checkers: tuple[Checker, ...] = ()
    location: Location = field(compare=False)


@record
class SorryServer:
    """`sorry_server IP PORT`: serves while no real server of the virtual server is up."""

    address: str
    port: int | None
    location: Location = field(compare=False)


@record
class VirtualServer:
    """`virtual_server IP PORT` (address and port set) or `virtual_server fwmark N` (fwmark)."""

    address: str | None = None
    port: int | None = None
    fwmark: int | None = None
    protocol: Protocol = Protocol.TCP
    scheduler: LvsScheduler = LvsScheduler.WRR
    method: LvsMethod = LvsMethod.NAT
    persistence_timeout: int | None = None  # seconds; None: not persistent
    # From sh-port / mh-port ("port": hash the source port too) and sh-fallback / mh-fallback
    # ("fallback": skip a weight-0 server).
    scheduler_flags: frozenset[str] = frozenset()
    delay_loop: float = 60.0
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Command | None = None
    quorum_down: Command | None = None
    sorry_server: SorryServer | None = None
    sorry_server_inhibit: bool = False  # the idle sorry server stays in the kernel at weight 0
    alpha: bool = False
    omega: bool = False
    inhibit_on_failure: bool = False
    virtualhost: str | None = None
    real_servers: tuple[RealServer, ...] = ()
    location: Location = field(compare=False)

    @property
    def family(self) -> int:
        if self.address is not None:
            return ipaddress.ip_address(self.address).version
        if self.real_servers:
            return ipaddress.ip_address(self.real_servers[0].address).version
        return 4

    def endpoint(self, server: RealServer | SorryServer) -> Endpoint:
        """Where a real or sorry server of this virtual server is reached: a server without a
        port takes the virtual server's (keepalived does the same), 0 when neither has one."""
        port = server.port if server.port is not None else self.port
        return Endpoint(address=server.address, port=port or 0)

    @property
    def key(self) -> str:
        """A readable identity, e.g. `TCP 10.0.0.1:80` or `fwmark 7`."""
        if self.fwmark is not None:
            return f"fwmark {self.fwmark}"
        host = f"[{self.address}]" if self.family == 6 else str(self.address)
        return f"{self.protocol.value} {host}:{self.port}"
