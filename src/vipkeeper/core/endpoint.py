"""Where a real or sorry server is reached: an IP address and a port.

Its own module because the load balancer's records (`core.lb`, which the configuration model
imports in every daemon) build on it: a daemon without virtual servers then loads it alone, not
the health monitor's records (`core.health_records`, which offer it too).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, order=True)
class Endpoint:
    """A real or sorry server: IP address (text) and port."""

    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"
