"""A virtual address, as the configuration names it and the core orders it added or removed.

Its own module, without the core's effects: the start (`vipkeeper.launch`) removes the VIPs a
killed run left behind before the core loads.
"""

from __future__ import annotations

from vipkeeper.core.records import record


@record
class VirtualAddress:
    """One address the instance owns while Master (keepalived's virtual_ipaddress line)."""

    address: str  # "172.16.9.1" or "2001:db8::1"
    prefixlen: int  # 32 / 128 when the configuration gave none
    dev: str  # interface the address goes on
    label: str | None = None
    scope: str | None = None  # "global", "link", "host"; None: kernel default
