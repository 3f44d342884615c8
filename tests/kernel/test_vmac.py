"""`use_vmac` on Debian's kernel in the VM, against keepalived (apt) in the same guest.

The scenario of vipkeeper.testing.vmacnet (adverts from the macvlan, the common case): vipkeeper
as Master holds the VIP on the macvlan `vrrp.51` with the virtual MAC 00:00:5e:00:01:33, its
adverts have the shape keepalived's have, and after it stops keepalived answers the client at the
same MAC without the client's ARP entry changing; the macvlan leaves with vipkeeper.
"""

from __future__ import annotations

import shutil

from guestnet import GUEST_BOUND, artifacts

from vipkeeper.testing.netns import Lab
from vipkeeper.testing.vmacnet import run_scenario


def test_vmac_failover_keeps_the_virtual_mac_and_adverts_match_keepalived() -> None:
    workdir = artifacts() / "vmac"
    shutil.rmtree(workdir, ignore_errors=True)
    with Lab(workdir=workdir) as lab:
        run_scenario(lab, xmit_base=False, within=GUEST_BOUND)
