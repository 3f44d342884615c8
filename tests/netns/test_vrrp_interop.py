"""vipkeeper and real keepalived (2.2.x) in the same virtual router.

One vipkeeper and one keepalived, each in its own namespace on the lab bridge, share VRID 51:
VRRPv2 with PASS authentication, and VRRPv3. Each side is the Master in turn (the higher
priority): the right one holds the VIP, the other stays Backup, and a hard failure of the Master
(its processes killed, its link cut) moves the VIP to the other implementation. A graceful stop
of vipkeeper (priority 0) hands over to keepalived after Skew_Time, and the other way round.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

import pytest

from vipkeeper.core import timing
from vipkeeper.testing.daemons import (
    SETTLE,
    Subnet,
    Vipkeeper,
    describe,
    global_defs,
    instance_config,
    start_vipkeeper,
    wait_for_holders,
    wait_until_reachable,
)
from vipkeeper.testing.netns import KEEPALIVED, Host, Keepalived, Lab
from vipkeeper.testing.waits import poll

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which(KEEPALIVED) is None, reason="keepalived not installed"),
]

MARGIN = 0.5


@dataclass(frozen=True)
class Flavour:
    version: int
    advert_int: float
    auth_pass: str | None = None

    def config(self, *, priority: int, vip: str) -> str:
        return instance_config(
            priority=priority,
            vips=[vip],
            version=self.version,
            advert_int=self.advert_int,
            auth_pass=self.auth_pass,
        )

    def master_down_interval(self, priority: int) -> float:
        """RFC 3768 §6.1 / RFC 9568 §6.1 (`core.timing`, checked against the RFCs' figures
        in tests/unit/test_timing.py)."""
        return timing.master_down_interval(
            version=self.version, priority=priority, master_adver_interval=self.advert_int
        )


FLAVOURS = {
    "v2-pass": Flavour(version=2, advert_int=1.0, auth_pass="interop"),
    "v3": Flavour(version=3, advert_int=0.2),
}


def build(
    lab: Lab, flavour: str, *, vipkeeper_priority: int, keepalived_priority: int
) -> tuple[Subnet, Host, Host, Host, Vipkeeper, Keepalived]:
    net = Subnet.next()
    vk_host = lab.add_host("vk", [net.v4_cidr(1)])
    ka_host = lab.add_host("ka", [net.v4_cidr(2)])
    client = lab.add_host("client", [net.v4_cidr(200)])
    settings = FLAVOURS[flavour]
    vipkeeper = start_vipkeeper(
        lab, vk_host, settings.config(priority=vipkeeper_priority, vip=net.vip4_cidr)
    )
    keepalived = lab.start_keepalived(
        ka_host,
        global_defs("ka") + settings.config(priority=keepalived_priority, vip=net.vip4_cidr),
    )
    # Elected: the higher priority alone holds the VIP and the other says it is Backup.
    both = [vipkeeper, keepalived]
    hosts = [vk_host, ka_host]
    if vipkeeper_priority > keepalived_priority:
        wait_for_holders(lab, hosts, net.vip4_cidr, ["vk"], within=SETTLE, daemons=both)
        poll(SETTLE, lambda: _keepalived_is_backup(keepalived))
    else:
        wait_for_holders(lab, hosts, net.vip4_cidr, ["ka"], within=SETTLE, daemons=both)
        poll(SETTLE, lambda: _assert_vipkeeper_state(vipkeeper, "BACKUP"))
    return net, vk_host, ka_host, client, vipkeeper, keepalived


def _keepalived_is_backup(keepalived: Keepalived) -> None:
    assert keepalived.running(), keepalived.log()
    log = keepalived.log()
    assert "Entering BACKUP STATE" in log, log
    assert log.rfind("Entering BACKUP STATE") > log.rfind("Entering MASTER STATE"), log


@pytest.mark.parametrize("flavour", list(FLAVOURS))
@pytest.mark.parametrize(
    "master",
    [
        pytest.param("vk", id="vipkeeper master, keepalived takes over"),
        pytest.param("ka", id="keepalived master, vipkeeper takes over"),
    ],
)
def test_the_master_fails_hard_and_the_other_implementation_takes_over(
    lab: Lab, flavour: str, master: str
) -> None:
    net, vk_host, ka_host, client, vipkeeper, keepalived = build(
        lab,
        flavour,
        vipkeeper_priority=200 if master == "vk" else 100,
        keepalived_priority=100 if master == "vk" else 200,
    )
    both = [vipkeeper, keepalived]
    failed, survivor, takes_over = (
        (vk_host, ka_host, "ka") if master == "vk" else (ka_host, vk_host, "vk")
    )
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=both)

    # The failed host keeps its addresses after SIGKILL: only the survivor counts.
    killed_at = lab.hard_fail(failed)
    wait_for_holders(lab, [survivor], net.vip4_cidr, [takes_over], within=SETTLE, daemons=both)
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=both)
    if takes_over == "vk":  # only vipkeeper's handle reads when a state was entered
        takeover = vipkeeper.entered("MASTER", after=killed_at)
        assert takeover is not None, describe(both)
        bound = FLAVOURS[flavour].master_down_interval(100)
        assert takeover.at - killed_at <= bound + MARGIN, (takeover, killed_at)


def _assert_vipkeeper_state(vipkeeper: Vipkeeper, state: str) -> None:
    assert vipkeeper.running(), describe([vipkeeper])
    assert vipkeeper.state() == state, describe([vipkeeper])


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_graceful_stops_hand_over_between_implementations_after_skew_time(
    lab: Lab, flavour: str
) -> None:
    """Priority 0 from each implementation is understood by the other."""
    net, vk_host, ka_host, _client, vipkeeper, keepalived = build(
        lab, flavour, vipkeeper_priority=200, keepalived_priority=100
    )
    both = [vipkeeper, keepalived]
    hosts = [vk_host, ka_host]
    settings = FLAVOURS[flavour]

    assert vipkeeper.stop() == 0, describe([vipkeeper])
    took = wait_for_holders(lab, hosts, net.vip4_cidr, ["ka"], within=SETTLE, daemons=both)
    mdi = settings.master_down_interval(100)
    assert took < mdi, f"keepalived took {took:.3f} s, no faster than Master_Down_Interval"

    # vipkeeper comes back as a Backup (priority 50 now) and keepalived stops gracefully.
    again = start_vipkeeper(lab, vk_host, settings.config(priority=50, vip=net.vip4_cidr))
    poll(SETTLE, lambda: _assert_vipkeeper_state(again, "BACKUP"))
    stopped_at = time.time()
    assert keepalived.stop() == 0, keepalived.log()
    wait_for_holders(lab, hosts, net.vip4_cidr, ["vk"], within=SETTLE, daemons=[again, keepalived])
    takeover = again.entered("MASTER", after=stopped_at)
    assert takeover is not None, describe([again])
    took = takeover.at - stopped_at
    mdi = settings.master_down_interval(50)
    assert took < mdi, f"vipkeeper took {took:.3f} s, no faster than Master_Down_Interval"
