"""A virtual server's pool: its real servers with their weights, its sorry server, and the rule
for when the sorry server takes the traffic.

One record from the health checks to the data plane: the health monitor (`core.health`) answers
with a `Pool`, the load balancer (`core.lb`) serves it as a virtual service. Must never: read the
configuration, touch the kernel, or remember anything (quorum is the health monitor's).
"""

from __future__ import annotations

import ipaddress

from vipkeeper.core.endpoint import Endpoint
from vipkeeper.core.records import record


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")


@record
class RealServer(Endpoint):
    """A real or sorry server (an Endpoint) with its current weight (0 = inhibited: no new flows,
    stays configured)."""

    weight: int = 1

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)
        check_port(self.port)
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    @classmethod
    def at(cls, endpoint: Endpoint, weight: int = 1) -> RealServer:
        return cls(address=endpoint.address, port=endpoint.port, weight=weight)

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(address=self.address, port=self.port)

    @property
    def name(self) -> str:
        """Stable name fed to the Maglev hashes; the weight is deliberately not part of it."""
        return str(self.endpoint)


@record
class Pool:
    """The real servers in a virtual server's pool with their current weights (a server that
    left the pool is absent, an inhibited one has weight 0), and its sorry server (None: none is
    configured, or the health monitor leaves the idle one out).

    `in_quorum` is decided by the health monitor (quorum and hysteresis need memory).
    """

    real_servers: tuple[RealServer, ...] = ()
    sorry_server: RealServer | None = None
    in_quorum: bool = True

    def __post_init__(self) -> None:
        seen: set[tuple[str, int]] = set()
        for server in self.real_servers:
            if server.key in seen:
                raise ValueError(f"duplicate real server {server} in the pool")
            seen.add(server.key)

    @property
    def sorry_active(self) -> bool:
        """Whether the sorry server takes the traffic: there is one, and quorum is lost or no
        real server has a positive weight (keepalived.conf(5), sorry_server). The one rule: the
        health monitor's pools and the load balancer's destinations both ask it here."""
        if self.sorry_server is None:
            return False
        return not self.in_quorum or not any(server.weight > 0 for server in self.real_servers)
