"""`use_vmac` on the host's kernel, against real keepalived (what is proven: see
vipkeeper.testing.vmacnet).

The macvlan needs the kernel's macvlan driver; a kernel without it is named in the failure (and
in vipkeeper's log: `use_vmac: cannot create ... this kernel has no macvlan`). tests/kernel runs
the same scenario on Debian's kernel in the VM.
"""

from __future__ import annotations

import pytest

from vipkeeper.testing.daemons import Subnet, instance_config, start_vipkeeper
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.vmacnet import VMAC_DEVICE, VRID, link_mac, run_scenario
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

WITHIN = 20.0  # seconds for each condition: several advert intervals on a loaded machine


@pytest.mark.parametrize("xmit_base", [False, True], ids=["adverts-on-vmac", "vmac_xmit_base"])
def test_vmac_failover_keeps_the_virtual_mac_and_adverts_match_keepalived(
    lab: Lab, xmit_base: bool
) -> None:
    run_scenario(lab, xmit_base=xmit_base, within=WITHIN)


def test_a_macvlan_that_cannot_be_made_is_said_at_start_and_the_instance_stays_in_fault(
    lab: Lab,
) -> None:
    net = Subnet.next()
    vk = lab.add_host("vk", [net.v4_cidr(1)])
    # The name is taken by something else (as the missing driver would fail it, it cannot be made).
    lab.run(vk, "ip", "link", "add", VMAC_DEVICE, "type", "veth", "peer", "name", "taken0")
    config = instance_config(priority=150, vips=[net.vip4_cidr], vrid=VRID, extra=["use_vmac"])
    vipkeeper = start_vipkeeper(lab, vk, config)

    def faulted() -> None:
        assert vipkeeper.messages(f"use_vmac: {VMAC_DEVICE} exists and is not a macvlan"), (
            vipkeeper.log()
        )
        assert vipkeeper.states() == ["FAULT"], vipkeeper.log()

    poll(WITHIN, faulted)
    assert vipkeeper.running()
    assert net.vip4_cidr not in lab.addresses(vk, dev=VMAC_DEVICE)
    assert vipkeeper.stop() == 0
    assert link_mac(lab, vk, VMAC_DEVICE) is not None  # not ours: left alone
