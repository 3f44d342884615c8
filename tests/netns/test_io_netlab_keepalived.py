"""The namespace lab itself, validated with the reference implementation: two real keepalived
2.2.x daemons in two namespaces elect exactly one master, and the VIP moves when it stops. If
this fails, interop tests cannot be trusted either."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from vipkeeper.testing.netns import KEEPALIVED, Host, Lab
from vipkeeper.testing.waits import polled

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which(KEEPALIVED) is None, reason="keepalived not installed"),
]

CONFIG = """
global_defs {{
    router_id {name}
    enable_script_security
    script_user root
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        10.0.0.100/24
    }}
}}
"""

poll = polled(15, interval=0.2)


def holders(lab: Lab, *hosts: Host) -> list[str]:
    return [h.name for h in hosts if "10.0.0.100/24" in lab.addresses(h)]


def test_two_keepalived_elect_one_master_and_the_vip_moves_when_it_stops(lab: Lab) -> None:
    a = lab.add_host("a", ["10.0.0.1/24"])
    b = lab.add_host("b", ["10.0.0.2/24"])
    low = lab.start_keepalived(a, CONFIG.format(name="a", priority=100))
    high = lab.start_keepalived(b, CONFIG.format(name="b", priority=200))

    @poll
    def higher_priority_is_the_only_master() -> None:
        assert low.running() and high.running(), low.log() + high.log()
        assert holders(lab, a, b) == ["b"]

    higher_priority_is_the_only_master()
    assert "Entering MASTER STATE" not in low.log()

    assert high.stop() == 0
    assert holders(lab, b) == []  # keepalived removes its VIPs on SIGTERM

    @poll
    def backup_took_over() -> None:
        assert holders(lab, a, b) == ["a"]

    backup_took_over()


def test_teardown_kills_processes_and_removes_namespaces() -> None:
    lab = Lab()
    try:
        host = lab.add_host("a", ["10.0.0.1/24"])
        sleeper = lab.popen(host, "sleep", "300")
        namespaces = [lab.bridge_ns, host.ns]
    finally:
        lab.teardown()

    assert sleeper.poll() is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in namespaces if ns in listed]
    assert not lab.workdir.exists()
