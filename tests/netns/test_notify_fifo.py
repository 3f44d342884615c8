"""Notify FIFOs: VRRP lines across a failover next to real keepalived writing its own, and LVS
lines as a real server goes down and comes back.

r1 runs keepalived 2.2.x (priority 200), r2 runs vipkeeper (priority 100), both with
`notify_fifo` and a `notify_fifo_script` that appends what it reads to a file. keepalived starts
as Master; stopped, it hands over to vipkeeper; vipkeeper is stopped last. Both files must hold
the same lines for the same transitions, and vipkeeper's exactly the transitions it went
through, in order, its STOP line included (it closes the FIFO before stopping the script).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest

from vipkeeper.testing.daemons import (
    SETTLE,
    Subnet,
    describe,
    global_defs,
    instance_config,
    start_vipkeeper,
    wait_for_holders,
)
from vipkeeper.testing.lbnet import LbNet, director_config
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

LINE = re.compile(r'^INSTANCE "VI_1" (BACKUP|MASTER|FAULT|STOP) (\d+)$')


def fifo_config(router_id: str, directory: Path) -> str:
    """global_defs with a notify FIFO whose script copies every line to `lines`."""
    fifo, lines = directory / "notify.fifo", directory / "lines"
    defs = global_defs(router_id)
    return defs.replace(
        "}\n",
        f"    notify_fifo {fifo}\n    notify_fifo_script \"/bin/sh -c 'cat $0 >> {lines}'\"\n}}\n",
        1,
    )


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_notify_fifo_lines_across_a_failover_match_keepalived_s(lab: Lab) -> None:
    net = Subnet.next()
    r1 = lab.add_host("r1", [net.v4_cidr(1)])
    r2 = lab.add_host("r2", [net.v4_cidr(2)])
    theirs, ours = lab.workdir / "keepalived-fifo", lab.workdir / "vipkeeper-fifo"
    theirs.mkdir()
    ours.mkdir()
    vips = [net.vip4_cidr]
    keepalived = lab.start_keepalived(
        r1, fifo_config("r1", theirs) + instance_config(priority=200, vips=vips)
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[keepalived])
    vipkeeper = start_vipkeeper(
        lab, r2, fifo_config("r2", ours) + instance_config(priority=100, vips=vips)
    )
    daemons = [keepalived, vipkeeper]

    def reads(path: Path, expected: list[str]) -> None:
        assert lines_of(path) == expected, f"{lines_of(path)}\n{describe(daemons)}"

    poll(SETTLE, lambda: reads(ours / "lines", ['INSTANCE "VI_1" BACKUP 100']))

    keepalived.stop()  # priority 0: vipkeeper takes over at once
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=daemons)
    poll(
        SETTLE,
        lambda: reads(ours / "lines", ['INSTANCE "VI_1" BACKUP 100', 'INSTANCE "VI_1" MASTER 100']),
    )

    assert vipkeeper.stop() == 0, describe(daemons)
    assert lines_of(ours / "lines") == [
        'INSTANCE "VI_1" BACKUP 100',
        'INSTANCE "VI_1" MASTER 100',
        'INSTANCE "VI_1" STOP 100',
    ], describe(daemons)
    assert not (ours / "notify.fifo").exists()  # vipkeeper created it, so it removed it

    # keepalived wrote the same lines for the same life (its reader is sent SIGTERM before the
    # STOP line is written, so a plain reader like this one never sees that one).
    theirs_lines = lines_of(theirs / "lines")
    assert all(LINE.match(line) for line in theirs_lines), theirs_lines
    assert theirs_lines == ['INSTANCE "VI_1" BACKUP 200', 'INSTANCE "VI_1" MASTER 200']


def test_lvs_notify_fifo_reports_a_real_server_going_down_and_up(tmp_path: Path) -> None:
    """One director, `lvs_notify_fifo` with no reader yet: the lines wait in the FIFO until the
    test reads them. rs1's HTTP service dies (its HTTP_GET fails), then comes back."""
    fifo = tmp_path / "lvs.fifo"
    down = "RS [192.168.0.54]:tcp:80 [172.16.9.1]:tcp:80 DOWN"
    up = "RS [192.168.0.54]:tcp:80 [172.16.9.1]:tcp:80 UP"
    with LbNet(tmp_path) as net:
        d1 = net.start_vipkeeper(
            "d1", director_config(priority=150, global_lines=[f"lvs_notify_fifo {fifo}"])
        )
        poll(SETTLE, lambda: _assert(fifo.is_fifo(), d1.log()))
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        seen: list[str] = []

        def read_lines(expected: list[str]) -> None:
            with contextlib.suppress(BlockingIOError):
                seen.extend(os.read(reader, 65536).decode().splitlines())
            assert seen == expected, f"{seen}\n{d1.log()}"

        try:
            net.stop_http("rs1")
            poll(SETTLE, lambda: read_lines([down]))
            net.start_http("rs1")
            poll(SETTLE, lambda: read_lines([down, up]))
        finally:
            os.close(reader)
        assert d1.stop() == 0, d1.log()
    assert not fifo.exists()


def _assert(condition: bool, message: str) -> None:
    assert condition, message
