"""The autopilot in real daemons: a lone steady instance leaves the event loop asleep.

Two vipkeeper routers, one VRRPv3 instance each at advert_int 0.05 (20 adverts a second). Once
the election is over, the Master's advertisements and the Backup's watch for them run on the
autopilot thread: the process's main thread (the asyncio loop) does not wake up at all, while
the other thread wakes at least once per Master_Down_Interval. With `--no-autopilot` the loop
wakes for every advert (the control that shows the count can fail). Wake-ups are counted from
/proc (voluntary context switches per thread), not timed.

A reload that puts a second instance on the carried instance's socket takes the first back from
the autopilot: the second instance's Backup then hears its Master and never takes its VIP.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from vipkeeper.testing.daemons import (
    SETTLE,
    Subnet,
    Vipkeeper,
    describe,
    instance_config,
    start_vipkeeper,
    wait_for_holders,
)
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

FAST = {"version": 3, "advert_int": 0.05, "extra": ["garp_master_delay 0"]}
WINDOW = 2.0  # seconds of wake-ups counted: the measured span itself, not a wait


def wake_ups(pid: int) -> dict[int, int]:
    """Voluntary context switches so far, per thread id of `pid`."""
    counts = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                counts[int(task.name)] = int(line.split()[1])
    return counts


def wake_ups_during(daemon: Vipkeeper, seconds: float) -> tuple[int, int]:
    """(main thread, all other threads) wake-ups of `daemon` over `seconds`."""
    pid = daemon.process.pid
    before = wake_ups(pid)
    time.sleep(seconds)  # the counted window
    after = wake_ups(pid)
    main = after[pid] - before.get(pid, 0)
    others = sum(count - before.get(tid, 0) for tid, count in after.items() if tid != pid)
    return main, others


def steady_pair(lab: Lab, extra_args: tuple[str, ...]) -> tuple[Vipkeeper, Vipkeeper]:
    net = Subnet.next()
    r1, r2 = lab.add_host("r1", [net.v4_cidr(1)]), lab.add_host("r2", [net.v4_cidr(2)])
    master = start_vipkeeper(
        lab, r1, instance_config(priority=200, vips=[net.vip4_cidr], **FAST), extra_args=extra_args
    )
    wait_for_holders(lab, [r1], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master])
    backup = start_vipkeeper(
        lab, r2, instance_config(priority=100, vips=[net.vip4_cidr], **FAST), extra_args=extra_args
    )
    poll(SETTLE, lambda: _assert_state(backup, "BACKUP"))
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])
    return master, backup


def _assert_state(daemon: Vipkeeper, state: str) -> None:
    assert daemon.state() == state, describe([daemon])


def test_steady_master_and_backup_leave_the_event_loop_asleep(lab: Lab) -> None:
    master, backup = steady_pair(lab, ())
    adverts = WINDOW / FAST["advert_int"]  # type: ignore[operator]

    def loop_asleep(daemon: Vipkeeper, at_least: float) -> None:
        main, others = wake_ups_during(daemon, WINDOW)
        assert main <= 1, f"{daemon}: the loop woke {main} times in {WINDOW} s"
        assert others >= at_least, f"{daemon}: the autopilot woke only {others} times"

    # The Master's thread wakes for each advert; the Backup's once per Master_Down_Interval
    # (3 x 0.05 + skew, about 0.18 s). The handing-over right after the election may take a
    # moment, hence the poll.
    poll(SETTLE, lambda: loop_asleep(master, at_least=adverts / 2))
    poll(SETTLE, lambda: loop_asleep(backup, at_least=WINDOW / 0.2 / 2))


def test_without_the_autopilot_the_loop_wakes_for_every_advert(lab: Lab) -> None:
    master, _backup = steady_pair(lab, ("--no-autopilot",))
    main, others = wake_ups_during(master, WINDOW)
    assert main >= WINDOW / FAST["advert_int"] / 2, (main, others)  # type: ignore[operator]


def test_a_reload_sharing_the_socket_takes_the_carried_backup_back(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = lab.add_host("r1", [net.v4_cidr(1)]), lab.add_host("r2", [net.v4_cidr(2)])
    first = instance_config(name="VI_1", vrid=51, priority=200, vips=[net.vip4_cidr], **FAST)
    second = instance_config(name="VI_2", vrid=52, priority=200, vips=[net.v4_cidr(101)], **FAST)
    master = start_vipkeeper(lab, r1, first + second)
    wait_for_holders(lab, [r1], net.v4_cidr(101), ["r1"], within=SETTLE, daemons=[master])
    backup = start_vipkeeper(lab, r2, first.replace("priority 200", "priority 100"))
    poll(SETTLE, lambda: _assert_state(backup, "BACKUP"))
    # VI_1 alone on r2's eth0: carried. Now VI_2 joins it on the same socket.
    poll(SETTLE, lambda: _assert_carried(backup))
    backup.config_path.write_text((first + second).replace("priority 200", "priority 100"))
    backup.process.send_signal(signal.SIGHUP)

    def vi_2_is_backup() -> None:
        assert backup.states("VI_2")[-1:] == ["BACKUP"], describe([backup])

    poll(SETTLE, vi_2_is_backup)
    # Several Master_Down_Intervals (about 0.18 s each) with VI_2's Master advertising: a Backup
    # that did not hear it would take its VIP.
    time.sleep(1.0)  # the span in which a wrong takeover would happen, not a wait for one
    assert "MASTER" not in backup.states("VI_2"), describe([master, backup])
    assert "MASTER" not in backup.states("VI_1"), describe([master, backup])
    wait_for_holders(
        lab, [r1, r2], net.v4_cidr(101), ["r1"], within=SETTLE, daemons=[master, backup]
    )


def _assert_carried(daemon: Vipkeeper) -> None:
    main, _others = wake_ups_during(daemon, 0.5)
    assert main <= 1, f"{daemon}: not carried yet (the loop woke {main} times)"
