"""Putting the lab back in its starting state after a test, whatever the test did.

Owns: the definition of "the starting state" (every container running, VRRP unpartitioned,
ARP suppression and httpd on, the preferred master holding the VIP alone, both real servers
answering) and undoing every fault `Faults` can make.  Must never: recreate containers or
change the configuration (a test that does so restores it itself).
"""

from __future__ import annotations

from harness.faults import Faults
from harness.lab import Lab
from harness.probes import masters, servers_answering
from harness.topology import (
    CLIENT,
    DIRECTORS,
    FRONT_IF,
    PREFERRED_MASTER,
    PROMETHEUS,
    REAL_SERVERS,
    VIP,
)
from harness.waits import wait_until

SERVICES = (*DIRECTORS, *REAL_SERVERS, CLIENT, PROMETHEUS)
UP_TIMEOUT = 60.0  # s: containers started -> one master and HTTP through the VIP


def restore(lab: Lab, *, timeout: float = UP_TIMEOUT) -> None:
    """Undo whatever a test may have done, then wait (up to `timeout` per step) for the
    starting state."""
    faults = Faults(lab)
    for service in SERVICES:
        state = lab.state(service)
        if state == "paused":
            lab.unpause(service)
        elif state != "running":
            lab.start(service)
    wait_until(lambda: lab.is_running(SERVICES), timeout=30, what="all lab containers running")
    faults.heal_vrrp()
    for rs in REAL_SERVERS:
        if not lab.exec(rs, ["vipset.sh", "status"]).ok:
            faults.arp_suppression(rs, on=True)
        if not lab.exec(rs, ["sh", "-c", "apache2ctl status >/dev/null 2>&1 || pgrep apache2"]).ok:
            faults.httpd_up(rs)
    wait_until(
        lambda: masters(lab) == {PREFERRED_MASTER},
        timeout=timeout,
        interval=0.3,
        what=f"{PREFERRED_MASTER} alone to hold the VIP",
    )
    # The client resolves the VIP afresh: a neighbour entry left by an earlier test could still
    # point at the other director.
    lab.exec(CLIENT, ["ip", "neigh", "flush", "to", VIP, "dev", FRONT_IF], check=True)
    wait_until(
        lambda: set(servers_answering(lab, requests=10)) == set(REAL_SERVERS),
        timeout=timeout,
        interval=0.5,
        what="both real servers answering, no failures",
    )
