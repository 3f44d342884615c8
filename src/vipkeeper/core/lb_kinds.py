"""The load balancer's closed sets: protocol, scheduler, forwarding method, scheduler flags.

Owns: the names keepalived's `virtual_server` block chooses from, apart from `core.lb` so the
configuration model reads them without loading the load balancer's records (a VRRP-only daemon
never needs those). `core.lb` re-exports them.
"""

from __future__ import annotations

from enum import Enum


class Protocol(Enum):
    TCP = "TCP"
    UDP = "UDP"


class Scheduler(Enum):
    """keepalived's `lvs_sched` names this project supports; the short member names are the
    configuration's words for the same members."""

    ROUND_ROBIN = "rr"
    WEIGHTED_ROUND_ROBIN = "wrr"
    SOURCE_HASH = "sh"
    MAGLEV_HASH = "mh"
    LEAST_CONNECTION = "lc"  # hashed like wrr on the nftables data plane
    WEIGHTED_LEAST_CONNECTION = "wlc"  # likewise
    RR = "rr"
    WRR = "wrr"
    SH = "sh"
    MH = "mh"
    LC = "lc"
    WLC = "wlc"


class ForwardingMethod(Enum):
    """keepalived's `lvs_method`: direct routing (rewrite the MAC) or NAT (rewrite the IP)."""

    DR = "DR"
    NAT = "NAT"


class SchedulerFlag(Enum):
    """IPVS scheduler flags (ipvsadm's `-b`); only sh and mh read them."""

    FALLBACK = "fallback"  # sh-fallback / mh-fallback: skip a weight-0 server, try the next
    PORT = "port"  # sh-port / mh-port: hash the source port too, not only the source address
