"""Putting the lab back in its starting state after a test, whatever the test did.

Owns: the definition of "the starting state" (every container running, VRRP unpartitioned,
every frontend link up, ARP suppression and httpd on, the preferred master holding the VIP
alone, every real server answering, the client's VIP entry resolved afresh) and the undo of
every fault present in the lab.  On an inventory whose faults are not allowed
(read-only checks), nothing is undone or flushed: the starting state is only awaited.  Must
never: recreate containers or change the configuration (a test that does so restores it itself).
"""

from __future__ import annotations

from harness.faults import Kill, Pause, flush_client_vip, present_faults
from harness.lab import Lab
from harness.probes import client_vip_mac, masters, servers_answering
from harness.topology import REACTION_MARGIN
from vipkeeper.testing.waits import WaitTimeout, wait_until

UP_TIMEOUT = 60.0  # s: containers started -> one master and HTTP through the VIP


def restore(lab: Lab, *, timeout: float = UP_TIMEOUT, flush_client: bool = True) -> None:
    """Undo whatever a test may have done, then wait (up to `timeout` per step) for the
    starting state.  With `flush_client` False the client's ARP entry for the VIP is left to
    the protocol (gratuitous ARP from the MASTER) for one Master_Down_Interval, and flushed
    only if it still names another node then."""
    topo = lab.topology
    if lab.kind == "inventory" and not lab.allow_faults:
        _await_start_state(lab, timeout)
        return
    for cls in (Pause, Kill):  # containers first: the other faults are read inside them
        for fault in cls.present(lab):
            fault.undo()
    wait_until(lambda: lab.is_running(topo.services), timeout=30, what="all lab containers running")
    for fault in present_faults(lab):
        fault.undo()
    preferred = _await_preferred_master(lab, timeout)
    # The client resolves the VIP afresh: a neighbour entry left by an earlier test could still
    # point at the other director.
    if flush_client or not _client_follows(lab, preferred):
        flush_client_vip(lab)
    _await_start_state(lab, timeout)


def _await_preferred_master(lab: Lab, timeout: float) -> str:
    """Wait until the preferred master alone holds the VIP; its name."""
    preferred = lab.topology.preferred_master.name
    wait_until(
        lambda: masters(lab) == {preferred},
        timeout=timeout,
        interval=0.3,
        what=f"{preferred} alone to hold the VIP",
    )
    return preferred


def _await_start_state(lab: Lab, timeout: float) -> None:
    _await_preferred_master(lab, timeout)
    topo = lab.topology
    wait_until(
        lambda: set(servers_answering(lab, requests=10)) == set(topo.real_server_names),
        timeout=timeout,
        interval=0.5,
        what="every real server answering, no failures",
    )


def _client_follows(lab: Lab, director: str) -> bool:
    """The client's VIP entry names `director` (or is gone) within its Master_Down_Interval."""
    mac = lab.mac(director, lab.topology.front_net)
    try:
        wait_until(
            lambda: client_vip_mac(lab) in (mac, None),
            timeout=lab.topology.director(director).master_down_interval + REACTION_MARGIN,
            what=f"the client's VIP entry to name {director}",
        )
    except WaitTimeout:
        return False
    return True
