"""255 VRRP instances on one interface at run time, not only at configuration load.

One vipkeeper with VRID 1 to 255 on eth0 (vipkeeper.testing.many), alone on the LAN with a
listener: every instance becomes Master, its VIP is on the interface, and over LISTEN seconds
the listener hears adverts of every one of the 255 VRIDs, each about once per advert interval.
Then SIGTERM: every instance gives up (priority 0) and every VIP is gone.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from vipkeeper.testing.daemons import Subnet, start_vipkeeper
from vipkeeper.testing.many import ADVERT_INT, INSTANCES, LISTENER, config, parse_counts, vip
from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

LISTEN = 5.0  # seconds of adverts counted
STARTUP = 120.0  # seconds for 255 instances to reach Master on a loaded 2-core machine


def test_255_instances_on_one_interface_all_become_master_and_advertise(lab: Lab) -> None:
    net = Subnet.next()
    router = lab.add_host("r1", [net.v4_cidr(1)])
    listener_host = lab.add_host("listen", [net.v4_cidr(2)])
    daemon = start_vipkeeper(lab, router, config(net.number))
    expected = {vip(net.number, vrid) for vrid in range(1, INSTANCES + 1)}

    def all_master() -> None:
        masters = {t.instance for t in daemon.transitions() if t.new == "MASTER"}
        missing = expected - set(lab.addresses(router))
        assert len(masters) == INSTANCES and not missing, (
            f"{len(masters)} instances Master, {len(missing)} VIPs missing"
        )

    poll(STARTUP, all_master, [daemon])
    listener = lab.popen(
        listener_host, sys.executable, "-c", LISTENER, net.v4(2), f"{LISTEN:g}",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = listener.communicate(timeout=LISTEN + 60)
    counts = parse_counts(out.decode())
    assert sorted(counts) == list(range(1, INSTANCES + 1)), f"VRIDs heard: {sorted(counts)}"
    adverts = LISTEN / ADVERT_INT
    # Every VRID at its interval: the window's adverts give or take two (its phase, and one
    # interval of slack on a loaded machine), and no storm.
    assert all(adverts - 2 <= n <= adverts + 2 for n in counts.values()), counts
    assert daemon.running()

    assert daemon.stop(timeout=60) == 0
    poll(30, lambda: _none_left(lab, router, expected), [daemon])


def _none_left(lab: Lab, router: Host, expected: set[str]) -> None:
    left = expected & set(lab.addresses(router))
    assert not left, f"{len(left)} VIPs left after the stop"
