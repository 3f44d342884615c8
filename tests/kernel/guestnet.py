"""The load-balancing namespace lab (vipkeeper.testing.lbnet.LbNet) tuned for the emulated guest.

Python starts about 50x slower in the guest, so nothing here starts a Python process to look at
the lab: a real server is ready when bash can open a TCP connection to it, a one-shot request is
`curl`, the IPVS table is `ipvsadm -Ln`. Every wait is bounded by GUEST_BOUND, far above what a
native run needs, because a loaded host can stall the emulated CPU for many seconds.

Addresses on top of lbnet's: VIPS are four front-side VIPs (every real server holds all of them on
`lo`), GATEWAY a server-side VIP that NAT replies route through (a policy rule on each real server
sends traffic from its own address there, so DR replies, sourced from a VIP, still go straight
to the client).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from vipkeeper.testing import waits
from vipkeeper.testing.daemons import Vipkeeper
from vipkeeper.testing.lbnet import DIRECTORS, LbNet

T = TypeVar("T")

VIPS = ("172.16.9.1", "172.16.9.2", "172.16.9.3", "172.16.9.4")
GATEWAY = "192.168.0.1"
GUEST_BOUND = 480.0  # seconds: the most any one condition may take to come true in the guest
POLL = 0.5


def artifacts() -> Path:
    """The guest's read-write share with the host: daemon logs written there outlive the guest."""
    return Path(os.environ.get("VIPKEEPER_KERNEL_ARTIFACTS", "artifacts/kernel"))


def poll(
    check: Callable[[], T], *, within: float = GUEST_BOUND, daemons: Sequence[Vipkeeper] = ()
) -> T:
    """`waits.poll` at the guest's pace: a KeyError (an entry not there yet) is "not yet"."""
    return waits.poll(within, check, daemons, interval=POLL, retry_on=(AssertionError, KeyError))


class GuestNet(LbNet):
    """lbnet's topology (client, d1, d2, rs1, rs2, sorry) with every VIP and the NAT gateway."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, sorry=True)

    def build(self) -> None:
        super().build()
        for name, (_front, back) in self.servers.items():
            for vip in VIPS[1:]:
                self.run(name, "ip", "addr", "add", f"{vip}/32", "dev", "lo")
            # NAT replies (sourced from the server's own address) go back through the Master.
            self.run(name, "ip", "route", "add", "192.168.0.0/24", "dev", "srv0", "table", "100")
            self.run(name, "ip", "route", "add", "default", "via", GATEWAY, "table", "100")
            self.run(name, "ip", "rule", "add", "from", back, "lookup", "100")
        for director in DIRECTORS:
            # IPVS sysctls are per namespace; ip_vs is loaded before the namespaces exist.
            self.sysctl(director, **{"net.ipv4.vs.sloppy_tcp": "1"})

    def _wait_http(self, name: str) -> None:
        port = self.server_ports[name]

        poll(lambda: self.run(name, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"))

    def curl(self, vip: str, port: int = 80, *, timeout: float = 20) -> str:
        """One request on a fresh connection from the client: the answering server's name."""
        return self.run(
            "cli", "curl", "-sS", "--fail", "--max-time", f"{timeout:g}",
            f"http://{vip}:{port}/whoami",
        )  # fmt: skip

    def refuse_http(self, name: str) -> None:
        """The server's HTTP port refuses every connection (TCP reset), as if the service died;
        instant both ways, where restarting a Python server costs minutes in the guest."""
        self.nft(
            name,
            "table inet vkkernel {\n chain input {\n type filter hook input priority 0;\n"
            f" tcp dport {self.server_ports[name]} reject with tcp reset\n }}\n}}\n",
        )

    def accept_http(self, name: str) -> None:
        self.run(name, "nft", "delete", "table", "inet", "vkkernel")

    def holds_vip(self, director: str, vip: str = VIPS[0]) -> bool:
        out = self.run(director, "ip", "-j", "addr", "show", "dev", "fe0")
        return any(
            info.get("local") == vip for link in json.loads(out) for info in link["addr_info"]
        )

    def sync_daemons(self, director: str) -> list[str]:
        """The IPVS sync threads running in `director`: "master" and/or "backup"."""
        out = self.run(director, "ipvsadm", "-L", "--daemon")
        return sorted(line.split()[0] for line in out.splitlines() if "sync daemon" in line)
