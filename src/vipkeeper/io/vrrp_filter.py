"""The VRRP peer filter: an nftables table that lets VRRP in only from each instance's peers.

Owns `vrrp_peer_filter` (global_defs, a vipkeeper extension): rendering the table from the
instances' settings, loading it as ONE transaction (`nft -f -`), replacing it on reload,
removing it on a clean stop, and reading its two counters. Must never: touch another table
(keepalived's `nftables` keyword, which blocks traffic to VIPs in non-accept mode, is a
different thing and not implemented), or decide who is a peer (the configuration's
unicast_peer lists are).

Why: the daemon drops an advert from a source that is not a listed peer, but only after
Python has read, decoded and counted it. A flood of such adverts costs the daemon's CPU. With
the filter the kernel drops them in the input hook, before the raw socket sees them: a
VRRP packet (IP protocol 112, IPv4 or IPv6) whose (input interface, source address) is not
an instance's (interface, unicast peer) is counted in `dropped` and dropped; one that is
counted in `accepted` and goes on. Other protocols pass untouched. The chain runs at priority
raw (-300), before connection tracking and the usual filter chains.

The sets and rules are flushed and refilled in the same transaction on every load, so traffic
sees the old rule set or the new one, never none; the named counters survive a reload.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL
from vipkeeper.core.vrrp_settings import InstanceSettings
from vipkeeper.io.scripts import run_command

logger = logging.getLogger(__name__)

TABLE = "vipkeeper_vrrp"  # inet family
PRIORITY = -300  # nftables' "raw": before conntrack (-200) and filter (0)
COUNTERS = ("accepted", "dropped")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")

Runner = Callable[[Sequence[str], str | None], Awaitable[str]]


@dataclass(frozen=True, order=True)
class Peer:
    """VRRP from `address` is accepted when it comes in on `interface`."""

    interface: str
    address: str

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


def peers_of(settings: Iterable[InstanceSettings]) -> tuple[Peer, ...]:
    """Every (interface, unicast peer) pair of the instances, sorted, without repeats."""
    return tuple(sorted({Peer(s.interface, p) for s in settings for p in s.unicast_peers}))


def _element(peer: Peer) -> str:
    if not _IFNAME.match(peer.interface):
        raise ValueError(f"refusing to put interface {peer.interface!r} in an nft script")
    return f'"{peer.interface}" . {ipaddress.ip_address(peer.address)}'


def render(peers: Iterable[Peer], table: str = TABLE) -> str:
    """The nft script that creates the table if missing and sets its sets and rules."""
    chosen = sorted(set(peers))
    lines = [
        f"table inet {table} {{",
        *(f"    counter {name} {{ }}" for name in COUNTERS),
        "    set peers4 { type ifname . ipv4_addr; }",
        "    set peers6 { type ifname . ipv6_addr; }",
        f"    chain input {{ type filter hook input priority {PRIORITY}; policy accept; }}",
        "}",
        f"flush chain inet {table} input",
    ]
    for family in (4, 6):
        lines.append(f"flush set inet {table} peers{family}")
        elements = [_element(p) for p in chosen if p.family == family]
        if elements:
            lines.append(f"add element inet {table} peers{family} {{ {', '.join(elements)} }}")
    rule = f"add rule inet {table} input"
    lines += [
        f"{rule} meta l4proto != {VRRP_PROTOCOL} accept",
        f"{rule} iifname . ip saddr @peers4 counter name accepted accept",
        f"{rule} iifname . ip6 saddr @peers6 counter name accepted accept",
        f"{rule} counter name dropped drop",
    ]
    return "\n".join(lines) + "\n"


def render_removal(table: str = TABLE) -> str:
    """Removes the table; loads whether or not it exists."""
    return f"table inet {table}\ndelete table inet {table}\n"


class VrrpFilter:
    """The filter of one daemon: `sync` at start and reload, `remove` on stop, `counters`."""

    def __init__(
        self, *, nft: Sequence[str] = ("nft",), runner: Runner = run_command, table: str = TABLE
    ) -> None:
        self._nft = tuple(nft)
        self._run = runner
        self.table = table
        self.peers: tuple[Peer, ...] | None = None  # None: not installed by this daemon

    async def sync(self, enabled: bool, settings: Iterable[InstanceSettings]) -> None:
        """Install or replace the filter for these instances, or remove it when not enabled.
        A filter that does not load is logged as an error and VRRP runs on without it."""
        if not enabled:
            if self.peers is not None:
                await self.remove()
            return
        peers = peers_of(settings)
        try:
            await self._run([*self._nft, "-f", "-"], render(peers, self.table))
        except Exception as exc:  # VRRP runs on without it; the operator sees why
            logger.error("VRRP peer filter not installed (table inet %s): %s", self.table, exc)
            return
        if peers != self.peers:
            logger.info(
                "VRRP peer filter: accepting VRRP only from %s",
                ", ".join(f"{p.address} on {p.interface}" for p in peers) or "nobody",
            )
        self.peers = peers

    async def remove(self) -> None:
        if self.peers is None:
            return
        try:
            await self._run([*self._nft, "-f", "-"], render_removal(self.table))
        except Exception as exc:  # stopping goes on: the operator sees why the table stayed
            logger.error("cannot remove the VRRP peer filter (table inet %s): %s", self.table, exc)
            return
        self.peers = None

    async def counters(self) -> dict[str, object] | None:
        """{"peers": [...], "accepted": {"packets", "bytes"}, "dropped": {...}}; None when the
        filter is not installed."""
        if self.peers is None:
            return None
        argv = [*self._nft, "-j", "list", "counters", "table", "inet", self.table]
        try:
            out = await self._run(argv, None)
        except Exception as exc:  # removed by hand, say: the status goes on without it
            logger.warning("cannot read the VRRP peer filter's counters: %s", exc)
            return None
        result: dict[str, object] = {
            "table": f"inet {self.table}",
            "peers": [{"interface": p.interface, "address": p.address} for p in self.peers],
        }
        for item in json.loads(out).get("nftables", []):
            counter = item.get("counter")
            if counter and counter.get("name") in COUNTERS:
                result[counter["name"]] = {
                    "packets": int(counter["packets"]),
                    "bytes": int(counter["bytes"]),
                }
        return result
