"""The daemon's life cycle in namespaces: reloads that are refused or applied without a
failover, addresses a crashed run left behind, and a stale pidfile.

Each test is one or two routers on a bridge (`vipkeeper.testing.netns.Lab`), vipkeeper logging JSON.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from vipkeeper.testing.daemons import (
    SETTLE,
    V3_FAST,
    Subnet,
    describe,
    holders,
    instance_config,
    start_vipkeeper,
    wait_for_holders,
)
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns


def messages(daemon: object) -> list[str]:
    return [entry.get("msg", "") for entry in daemon.records()]  # type: ignore[attr-defined]


def test_a_bad_reload_is_refused_with_its_location_and_the_running_config_stays(
    lab: Lab,
) -> None:
    net = Subnet.next()
    r1 = lab.add_host("r1", [net.v4_cidr(1)])
    router = start_vipkeeper(
        lab, r1, instance_config(priority=200, vips=[net.vip4_cidr], **V3_FAST)
    )
    wait_for_holders(lab, [r1], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[router])

    router.config_path.write_text("vrrp_instance VI_1 {\n    priority 300\n    bogus_word 1\n}\n")
    router.process.send_signal(signal.SIGHUP)

    def refused() -> None:
        assert any("reload refused" in m for m in messages(router)), describe([router])

    poll(SETTLE, refused)
    located = [m for m in messages(router) if str(router.config_path) + ":" in m]
    assert any(":3:" in m and "bogus_word" in m for m in located), located
    assert router.running(), describe([router])
    assert holders(lab, [r1], net.vip4_cidr) == ["r1"]
    assert router.states() == ["BACKUP", "MASTER"], "a refused reload must not touch the state"


def test_a_valid_reload_applies_new_settings_and_keeps_unchanged_instances_running(
    lab: Lab,
) -> None:
    net = Subnet.next()
    r1, r2 = lab.add_host("r1", [net.v4_cidr(1)]), lab.add_host("r2", [net.v4_cidr(2)])
    keep = instance_config(name="KEEP", vrid=61, priority=200, vips=[net.v4_cidr(101)], **V3_FAST)
    moved = instance_config(name="MOVE", vrid=62, priority=200, vips=[net.v4_cidr(102)], **V3_FAST)
    peer_keep = instance_config(
        name="KEEP", vrid=61, priority=100, vips=[net.v4_cidr(101)], **V3_FAST
    )
    peer_moved = instance_config(
        name="MOVE", vrid=62, priority=150, vips=[net.v4_cidr(102)], **V3_FAST
    )
    first = start_vipkeeper(lab, r1, keep + moved)
    wait_for_holders(lab, [r1], net.v4_cidr(102), ["r1"], within=SETTLE, daemons=[first])
    second = start_vipkeeper(lab, r2, peer_keep + peer_moved)
    wait_for_holders(
        lab, [r1, r2], net.v4_cidr(101), ["r1"], within=SETTLE, daemons=[first, second]
    )

    # Drop MOVE's priority below the peer's: after the reload the peer must own that VIP while
    # KEEP stays on r1 without ever leaving MASTER.
    lowered = moved.replace("priority 200", "priority 50")
    first.config_path.write_text(keep + lowered)
    first.process.send_signal(signal.SIGHUP)

    wait_for_holders(
        lab, [r1, r2], net.v4_cidr(102), ["r2"], within=SETTLE, daemons=[first, second]
    )
    assert holders(lab, [r1, r2], net.v4_cidr(101)) == ["r1"]
    assert first.states("KEEP") == ["BACKUP", "MASTER"], describe([first])

    def reloaded() -> None:
        assert any("reloaded" in m for m in messages(first)), describe([first])

    poll(SETTLE, reloaded)
    # MOVE took its lower priority in place and stepped down to Backup under the peer's 150.
    assert first.states("MOVE")[-1] == "BACKUP", describe([first])


def test_vips_left_by_a_crashed_run_are_removed_at_start(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = lab.add_host("r1", [net.v4_cidr(1)]), lab.add_host("r2", [net.v4_cidr(2)])
    master = start_vipkeeper(
        lab, r1, instance_config(priority=200, vips=[net.vip4_cidr], **V3_FAST)
    )
    wait_for_holders(lab, [r1], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master])
    # r2's previous daemon "crashed" while Master: its VIP is still on the interface.
    lab.run(r2, "ip", "addr", "add", net.vip4_cidr, "dev", "eth0")
    assert holders(lab, [r1, r2], net.vip4_cidr) == ["r1", "r2"]

    backup = start_vipkeeper(
        lab, r2, instance_config(priority=100, vips=[net.vip4_cidr], **V3_FAST)
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[backup])
    assert any("earlier run" in m for m in messages(backup)), describe([backup])
    assert "MASTER" not in backup.states()


def test_a_stale_pidfile_does_not_stop_the_start_but_a_live_daemon_does(lab: Lab) -> None:
    net = Subnet.next()
    r1 = lab.add_host("r1", [net.v4_cidr(1)])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pidfile = lab.workdir / "stale.pid"
    pidfile.write_text(dead.stdout)
    config = instance_config(priority=200, vips=[net.vip4_cidr], **V3_FAST)
    router = start_vipkeeper(lab, r1, config, extra_args=["--pidfile", str(pidfile)])
    wait_for_holders(lab, [r1], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[router])
    assert pidfile.read_text().strip() == str(router.process.pid)

    second = start_vipkeeper(lab, r1, config, extra_args=["--pidfile", str(pidfile)])
    assert second.process.wait(timeout=SETTLE) == 1, describe([second])
    assert "already running" in second.log()
    assert router.running() and pidfile.read_text().strip() == str(router.process.pid)
    assert router.stop() == 0
    assert not os.path.exists(pidfile), "the pidfile outlived the daemon"
