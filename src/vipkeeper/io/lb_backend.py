"""The one interface every load-balancer data plane offers, and the choice between them.

Owns: the `LoadBalancerBackend` protocol the driver programs against, and `select_backend()`
(keepalived.conf `global_defs { lvs_backend auto|ipvs|nftables }`). Must never: decide which
real servers are healthy or which one a flow goes to -- that is vipkeeper.core.lb's job.

Contract: `apply(desired)` makes the kernel hold exactly `desired` (the full set of virtual
servers, not a delta) and is atomic or as near as the data plane allows; calling it again with
the same state is harmless. `clear()` removes everything this backend installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # the records load with the first load balancer, not with this interface
    from vipkeeper.core.lb import VirtualServer

BackendKind = Literal["auto", "ipvs", "nftables"]

PROC_IP_VS = Path("/proc/net/ip_vs")


class LoadBalancerBackend(Protocol):
    name: str

    async def apply(self, desired: Sequence[VirtualServer]) -> None: ...

    async def clear(self) -> None: ...


def ipvs_available(proc_ip_vs: Path = PROC_IP_VS) -> bool:
    """IPVS is usable when the kernel exposes /proc/net/ip_vs (module loaded or built in)."""
    return proc_ip_vs.exists()


def data_plane_choice(kind: BackendKind, proc_ip_vs: Path = PROC_IP_VS) -> str:
    """Which data plane `select_backend(kind)` takes on this kernel, and why, in one phrase
    (for `vipkeeper check` and the start-up log)."""
    has_ipvs = ipvs_available(proc_ip_vs)
    if kind == "nftables":
        return "nftables (lvs_backend nftables)"
    if kind == "ipvs":
        if has_ipvs:
            return "ipvs (lvs_backend ipvs)"
        return f"none: lvs_backend ipvs, but this kernel has no IPVS ({proc_ip_vs} is missing)"
    if has_ipvs:
        return "ipvs (auto: this kernel has IPVS)"
    return f"nftables (auto: this kernel has no IPVS, {proc_ip_vs} is missing; modprobe ip_vs)"


def select_backend(
    kind: BackendKind,
    *,
    make_ipvs: Callable[[], LoadBalancerBackend],
    make_nftables: Callable[[], LoadBalancerBackend],
    proc_ip_vs: Path = PROC_IP_VS,
) -> LoadBalancerBackend:
    """Build the configured backend; `auto` means IPVS where the kernel has it, else nftables.

    The factories keep this function free of each backend's own settings (interfaces, MAC
    resolver, netlink socket). Asking for `ipvs` on a kernel without it is an error, not a
    silent fallback: the operator asked for IPVS semantics.
    """
    if kind == "nftables":
        return make_nftables()
    if kind == "ipvs":
        if not ipvs_available(proc_ip_vs):
            raise RuntimeError(
                f"lvs_backend ipvs: this kernel has no IPVS ({proc_ip_vs} is missing); "
                "load ip_vs or use lvs_backend nftables"
            )
        return make_ipvs()
    if kind == "auto":
        return make_ipvs() if ipvs_available(proc_ip_vs) else make_nftables()
    raise ValueError(f"lvs_backend must be auto, ipvs or nftables, got {kind!r}")
