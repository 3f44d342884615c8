"""Real-server failure: stopping httpd on one real server drains it from
the pool once the director's HTTP_GET checker has seen it fail (lab/dir*/keepalived.conf:
delay_loop 2, connect_timeout 1, retry 1, delay_before_retry 1); after that no request fails and
every answer comes from the other server.  Starting httpd again brings it back within one
delay_loop (plus the check itself).

Bounds (harness.topology): down = delay_loop + (retry + 1) x connect_timeout + retry x
delay_before_retry, up = delay_loop + connect_timeout, each plus the reaction margin.
Keep-alive streams that were on the surviving server before the fault keep their connection
through the drain and the return: the Maglev table moves only the failed server's buckets.
The keepalived baseline on a kernel without IPVS does no health checking (lab/README.md), so
this test needs vipkeeper there.  Writes a timeline (JSON + PNG) to artifacts/lab/.
"""

from __future__ import annotations

import os
import time

import pytest
from harness import HttpProber, Lab, Request, Timeline, target, wait_until
from harness.faults import HttpdStop
from harness.topology import REACTION_MARGIN

pytestmark = pytest.mark.faults

TOPO = target.topology()
REAL_SERVERS = TOPO.real_server_names
FAILED_RS, *SURVIVORS = REAL_SERVERS
DOWN_BOUND = TOPO.health.down_bound() + REACTION_MARGIN
UP_BOUND = TOPO.health.up_bound() + REACTION_MARGIN
STREAMS = 10  # keep-alive streams; none on the survivor by chance: 1 / 2**10


def test_failed_real_server_is_drained_then_brought_back(
    healthy_lab: Lab, timeline: Timeline
) -> None:
    lab = healthy_lab
    if lab.director_daemon() == "keepalived" and not os.path.exists("/proc/net/ip_vs"):
        pytest.skip("the keepalived baseline without IPVS (VRRP + nft-dr.sh) has no health checks")
    httpd_stop = HttpdStop(lab, FAILED_RS, timeline=timeline)
    prober = HttpProber(lab, interval=0.1, timeout=1.0, keepalive_streams=STREAMS)
    with prober:

        def new_since(t: float) -> list[Request]:
            return [r for r in prober.records() if r.kind == "new" and r.start > t]

        wait_until(
            lambda: (
                len({r.stream for r in prober.records() if r.kind == "keepalive"}) == STREAMS
                and {r.server for r in new_since(0) if r.ok} == set(REAL_SERVERS)
            ),
            timeout=15,
            what="every keep-alive stream answered, new connections answered by both servers",
        )
        stopping_at = time.time()  # a request in flight from here on may see the stop
        down_at = httpd_stop.apply()
        drained_by = down_at + DOWN_BOUND
        # 30 requests after the drain bound: the pool is {SURVIVOR} alone.
        wait_until(
            lambda: len(new_since(drained_by)) >= 30,
            timeout=DOWN_BOUND + 15,
            what=f"30 requests after {FAILED_RS} must have been drained",
        )
        up_at = httpd_stop.undo()
        back_at = wait_until(
            lambda: next((r.start for r in new_since(up_at) if r.server == FAILED_RS), 0.0),
            timeout=UP_BOUND + 10,
            what=f"{FAILED_RS} to answer again",
        )
        timeline.mark(f"{FAILED_RS} answers again", kind="repair", at=back_at)
        wait_until(
            lambda: len(new_since(back_at)) >= 30,
            timeout=15,
            what="30 requests after the return",
        )
    timeline.requests = prober.requests
    new = [r for r in prober.requests if r.kind == "new"]

    # Before the fault: both servers answer.
    assert {r.server for r in new if r.end < stopping_at and r.ok} == set(REAL_SERVERS)
    # During detection, only requests that the director still sent to FAILED_RS fail.
    failed = [r for r in new if not r.ok]
    early = [r for r in failed if r.end < stopping_at]
    late = [r for r in failed if r.start > drained_by]
    assert early == [] and late == [], f"failed outside the detection window: {early + late}"
    # After detection, until it is back: every request answered, all by the survivor.
    drained = [r for r in new if drained_by < r.start < up_at]
    assert len(drained) >= 30 and all(r.ok for r in drained), drained
    assert {r.server for r in drained} == set(SURVIVORS)
    # It comes back within one check.
    assert back_at - up_at <= UP_BOUND, f"{FAILED_RS} back after {back_at - up_at:.2f} s"
    after = [r for r in new if r.start >= back_at]
    assert all(r.ok for r in after) and {r.server for r in after} == set(REAL_SERVERS), after

    # Keep-alive streams that were on the survivor never noticed anything.
    streams = prober.streams()
    on_survivor = {n: rs for n, rs in streams.items() if rs[0].server in SURVIVORS}
    assert on_survivor, "no keep-alive stream started on the survivor"
    for n, requests in on_survivor.items():
        assert all(r.ok for r in requests), f"stream {n}: {[r for r in requests if not r.ok]}"
        assert {r.conn for r in requests} == {1}, f"stream {n} reconnected"
