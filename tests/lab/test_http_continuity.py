"""HTTP continuity: during a `docker kill` of the MASTER

- every keep-alive connection survives: no reset, no reconnect, the same real server before and
  after; its requests are only delayed (TCP retransmits into the failover window).  This holds
  because both directors hash a flow to the same real server (same configuration, same seed,
  same Maglev table), so the new MASTER forwards an established flow exactly like the old one;
- new connections fail only if they started inside the failover window (from the kill until
  the VIP has moved, plus a margin), and all succeed after it.

Several keep-alive streams run at once, spread over both real servers, so that a director
hashing flows differently from the other would break about half of them.
Writes a timeline (JSON + PNG) to artifacts/lab/.
"""

from __future__ import annotations

from harness import HttpProber, Lab, Timeline, VipWatcher, lab_topology, masters, wait_until
from harness.faults import Kill
from harness.topology import REACTION_MARGIN

TOPO = lab_topology()

PROBE_TIMEOUT = 1.0  # s: a new connection's request timeout
# A keep-alive request sent just before the kill is retransmitted by the client's TCP with
# exponential backoff (0.2, 0.4, 0.8, 1.6, 3.2 s ...); the failover takes up to the backup's
# Master_Down_Interval (3.6 s), so the retransmission that gets through comes ~6.2 s after the
# first send, the next one ~12.6 s.  The keep-alive timeout must outlast that.
KEEPALIVE_TIMEOUT = 20.0
STREAMS = 12  # all on one real server by chance: 2 / 2**12


def test_keepalive_connections_survive_a_master_kill_and_new_ones_fail_only_in_the_window(
    healthy_lab: Lab, timeline: Timeline
) -> None:
    lab = healthy_lab
    (old,) = masters(lab)
    (new,) = TOPO.others(old)
    bound = TOPO.director(new).master_down_interval + REACTION_MARGIN
    prober = HttpProber(
        lab,
        interval=0.1,
        timeout=PROBE_TIMEOUT,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        keepalive_streams=STREAMS,
    )
    with VipWatcher(lab, timeline.vip_changed) as watcher, prober:

        def ok_streams_since(t: float) -> set[int]:
            return {
                r.stream for r in prober.records() if r.kind == "keepalive" and r.ok and r.start > t
            }

        wait_until(
            lambda: watcher.history and len(ok_streams_since(0)) == STREAMS,
            timeout=15,
            what="every keep-alive stream answered once, and the VIP watcher's first answer",
        )
        killed_at = Kill(lab, old, timeline=timeline).apply()
        moved_at = watcher.wait_held({new}, after=killed_at, timeout=bound + 5)
        recovered = moved_at + REACTION_MARGIN
        # Every stream has been answered again after the window, and new connections run.
        wait_until(
            lambda: (
                len(ok_streams_since(recovered)) == STREAMS
                and sum(1 for r in prober.records() if r.kind == "new" and r.start > recovered)
                >= 20
            ),
            timeout=KEEPALIVE_TIMEOUT + 10,
            what="every keep-alive stream and 20 new connections answered after the failover",
        )
    timeline.requests = prober.requests
    assert moved_at - killed_at <= bound, f"VIP moved after {moved_at - killed_at:.2f} s"

    streams = prober.streams()
    assert len(streams) == STREAMS
    servers_before = {n: rs[0].server for n, rs in streams.items()}
    assert set(servers_before.values()) == set(TOPO.real_server_names), (
        f"streams not spread: {servers_before}"
    )
    for n, requests in streams.items():
        failed = [r for r in requests if not r.ok]
        assert failed == [], f"keep-alive stream {n} failed (reset or timeout): {failed[:3]}"
        assert {r.conn for r in requests} == {1}, f"keep-alive stream {n} reconnected"
        servers = {r.server for r in requests}
        assert servers == {servers_before[n]}, f"stream {n} changed real server: {servers}"

    new_requests = [r for r in prober.requests if r.kind == "new"]
    failed = [r for r in new_requests if not r.ok]
    outside = [r for r in failed if not killed_at - PROBE_TIMEOUT <= r.start <= recovered]
    assert outside == [], f"new connections failed outside the failover window: {outside[:5]}"
    after = [r for r in new_requests if r.start > recovered]
    assert len(after) >= 20 and all(r.ok for r in after), after
