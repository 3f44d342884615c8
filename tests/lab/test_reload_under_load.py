"""Reloads on the MASTER under continuous HTTP load (LVS-DR, the stateless Maglev hash).

The MASTER director mounts a copy of its keepalived.conf (recreated once with LAB_DIRn_CONF
naming it, like the priority fault); the copy is edited and `vipkeeper reload` run in the
director, one change at a time, while the client keeps STREAMS keep-alive connections busy and
opens a new connection every INTERVAL s.  Each reload's answer, `status --json` (last_reload:
result and changes) and /metrics (vipkeeper_reloads_total) must say exactly what changed, and no
director may change VRRP state or hand the VIP over.

What may move.  The data plane hashes each packet (source address and port) into a Maglev
table, with no connection state: a reload that leaves the table alone must cost nothing, and
one that changes the table moves the flows whose bucket changed owner, by design.  A moved
keep-alive connection lands on a real server that never saw it: reset, error, reconnect.

- unchanged file, delay_loop changed (a virtual-server option), the checker's connect_timeout
  changed: the table is the same, so zero failed requests of any kind;
- rs1's weight 1 -> 2 and back: the moved share of the table, computed with vipkeeper's own
  Maglev over both configurations, bounds the share of keep-alive connections that may move
  (with the sampling slack of STREAMS connections);
- rs2 removed: every flow on rs2 moves (1/N of them, N = 2), no flow on rs1 does;
- rs2 added back: the table changes size with the configured server count, so each flow's
  bucket is drawn afresh and about 1/N move (to rs2, the only other place), bounded likewise.

In every case a stream that ends on another real server must have failed on the way (a silent
move would mean connection state the data plane does not have).  A moved stream reconnects from
a new source port, a new flow that may hash back to the server it had; it still counts as moved
and the printed report names it.

New connections opened once a reload has returned never fail.  The moved share of every reload
is printed.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import HttpProber, Lab, Request, masters, target, wait_until
from harness.faults import state_dir, write_in_place
from harness.probes import director_status
from harness.restore import restore

from vipkeeper.config import parse_text
from vipkeeper.core import maglev
from vipkeeper.director import virtual_service

pytestmark = [
    pytest.mark.faults,
    pytest.mark.compose_only("recreates the MASTER's container with a copy of its configuration"),
]

TOPO = target.topology()
MASTER = TOPO.preferred_master.name
DIRECTOR = TOPO.director(MASTER)
RS1, RS2 = (rs.addresses[TOPO.servers_net] for rs in TOPO.real_servers[:2])
NAME_OF = {rs.addresses[TOPO.servers_net]: rs.name for rs in TOPO.real_servers}
SERVICE = f"TCP {TOPO.vip}:{TOPO.vip_port}"  # how reload and status name the virtual server

STREAMS = 16  # keep-alive connections: flows with their own source ports
INTERVAL = 0.2  # s between two requests of each stream, and between two new connections
KEEPALIVE_TIMEOUT = 5.0  # s: a moved connection is reset at once; a hang fails the same way
AFTER = 2.0  # s beyond the keep-alive timeout for every stream to ask again after a reload
CHECKS_SETTLE = 2 * TOPO.health.up_bound() + 5  # s: a real server added back passes a check
SIGMAS = 3.0  # sampling slack on a moved share, in binomial standard deviations


@dataclass(frozen=True, kw_only=True)
class Change:
    what: str
    edit: Callable[[str], str]  # the running text -> the new text
    changes: dict[str, list[str]]  # what reload must report (non-empty lists only)


def _rs_block(address: str) -> re.Pattern[str]:
    return re.compile(rf"\n(    real_server {re.escape(address)} \d+ \{{\n.*?\n    \}}\n)", re.S)


def _weight(address: str, weight: int) -> Callable[[str], str]:
    def edit(text: str) -> str:
        block = _rs_block(address).search(text)
        assert block is not None, f"no real_server {address} block"
        new = re.sub(r"(?m)^(\s*weight\s+)\d+", rf"\g<1>{weight}", block.group(1), count=1)
        return text.replace(block.group(1), new)

    return edit


def _replace(pattern: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        changed, count = re.subn(pattern, new, text)
        assert count >= 1, f"{pattern!r} not in the configuration"
        return changed

    return edit


def _rs(address: str) -> str:
    return f"{SERVICE} -> {address}:{TOPO.vip_port}"


def _without(address: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        block = _rs_block(address).search(text)
        assert block is not None, f"no real_server {address} block"
        return text.replace(block.group(1), "")

    return edit


def _with(address: str, original: str) -> Callable[[str], str]:
    """The real server's block from `original` put back as the virtual server's last one."""

    def edit(text: str) -> str:
        block = _rs_block(address).search(original)
        assert block is not None
        end = text.rindex("\n}")  # the virtual_server block's closing brace
        return text[: end + 1] + block.group(1) + text[end + 1 :]

    return edit


def _plan(original: str) -> list[Change]:
    return [
        Change(what="unchanged file", edit=lambda t: t, changes={}),
        Change(
            what="delay_loop 2 -> 3",
            edit=_replace(r"(?m)^(\s*delay_loop\s+)2\b", r"\g<1>3"),
            # The real servers' checkers inherit the virtual server's delay_loop.
            changes={
                "virtual_servers_changed": [SERVICE],
                "real_servers_changed": [_rs(RS1), _rs(RS2)],
            },
        ),
        Change(
            what="connect_timeout 1 -> 2 on rs2's checker",
            edit=lambda t: t.replace(
                block := _rs_block(RS2).search(t).group(1),  # type: ignore[union-attr]
                block.replace("connect_timeout 1", "connect_timeout 2"),
            ),
            changes={"real_servers_changed": [_rs(RS2)]},
        ),
        Change(
            what="rs1 weight 1 -> 2",
            edit=_weight(RS1, 2),
            changes={"real_servers_changed": [_rs(RS1)]},
        ),
        Change(
            what="rs1 weight 2 -> 1",
            edit=_weight(RS1, 1),
            changes={"real_servers_changed": [_rs(RS1)]},
        ),
        Change(
            what="rs2 removed", edit=_without(RS2), changes={"real_servers_removed": [_rs(RS2)]}
        ),
        Change(
            what="rs2 added back",
            edit=_with(RS2, original),
            changes={"real_servers_added": [_rs(RS2)]},
        ),
        Change(what="unchanged file", edit=lambda t: t, changes={}),
    ]


def _table(text: str) -> tuple[str, ...]:
    """The Maglev table (bucket -> real server) vipkeeper's data plane gets for this
    configuration with every real server healthy: its pool is then the configured one."""
    result = parse_text(text, "keepalived.conf")
    assert result.config is not None, result.diagnostics
    (vs,) = result.config.virtual_servers
    service = virtual_service(result.config, vs)
    weights = dict(service.configured_weights)
    assert service.table_size is not None
    return maglev.build_stable_table(weights, weights, service.table_size)


def _moved_share(before: str, after: str) -> float:
    """The share of flows whose real server changes between the two configurations' tables.
    Tables of different sizes (the configured server count changed) map a flow to a bucket
    afresh: a flow then moves unless it draws the same server, which happens with the new
    table's share of its old server."""
    old, new = _table(before), _table(after)
    if len(old) == len(new):
        return maglev.moved_fraction(old, new)
    new_shares = maglev.slot_shares(new)
    return sum(share * (1 - new_shares.get(s, 0.0)) for s, share in maglev.slot_shares(old).items())


def _bound(share: float) -> float:
    """Largest moved fraction of STREAMS flows consistent with `share` (sampling slack)."""
    if share == 0:
        return 0.0
    return share + SIGMAS * math.sqrt(share * (1 - share) / STREAMS) + 1 / STREAMS


@pytest.fixture
def editable_master(healthy_lab: Lab) -> Iterator[tuple[Lab, Path]]:
    """The MASTER recreated to mount a copy of its configuration (the VIP moves to the BACKUP
    and back while it restarts); recreated with its own file afterwards, even on failure."""
    lab = healthy_lab
    assert DIRECTOR.config_env is not None, "compose.yaml names no variable for its config"
    copy = state_dir(lab) / f"{MASTER}.reload-under-load.keepalived.conf"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DIRECTOR.config_path, copy)
    try:
        lab.compose_up((MASTER,), env={DIRECTOR.config_env: str(copy)})
        restore(lab)
        wait_until(
            lambda: director_status(lab, MASTER) is not None,
            timeout=30,
            what=f"{MASTER}'s daemon to answer on its control socket",
        )
        yield lab, copy
    finally:
        lab.compose_up((MASTER,), env={DIRECTOR.config_env: DIRECTOR.default_config})
        restore(lab)
        copy.unlink(missing_ok=True)


def _reloads_applied(lab: Lab) -> float:
    """vipkeeper_reloads_total{result="applied"} of the MASTER, scraped from the client."""
    url = f"http://{TOPO.nodes[MASTER].addresses[TOPO.front_net]}:9165/metrics"
    out = lab.exec(TOPO.client.name, ["curl", "-sf", url], timeout=10, check=True).output
    found = re.search(r'^vipkeeper_reloads_total\{result="applied"\} (\S+)$', out, re.M)
    assert found is not None, "no vipkeeper_reloads_total{result=applied} in /metrics"
    return float(found.group(1))


def _vrrp(lab: Lab) -> dict[str, tuple[object, object, object]]:
    """Per director: (state, became_master, last transition time) from its status."""
    seen = {}
    for director in TOPO.director_names:
        status = director_status(lab, director)
        assert status is not None, f"{director}: no status"
        (instance, *_) = status["instances"]
        last = instance["last_transition"]
        seen[director] = (instance["state"], instance["became_master"], last["time"])
    return seen


def _moved(requests: list[Request], since: float, until: float) -> dict[int, list[Request]]:
    """Keep-alive stream -> its failed requests that started in [since, until)."""
    moved: dict[int, list[Request]] = {}
    for r in requests:
        if r.kind == "keepalive" and not r.ok and since <= r.start < until:
            moved.setdefault(r.stream, []).append(r)
    return moved


def _all_up(lab: Lab) -> bool:
    status = director_status(lab, MASTER)
    servers = [
        rs for vs in (status or {}).get("virtual_servers") or [] for rs in vs["real_servers"]
    ]
    return bool(servers) and all(rs["health"] == "up" for rs in servers)


def _asked_since(requests: list[Request], since: float) -> bool:
    asked = {(r.kind, r.stream) for r in requests if r.start > since + INTERVAL}
    return {("keepalive", n) for n in range(1, STREAMS + 1)} | {("new", 0)} <= asked


def _server_of(requests: list[Request], stream: int, before: float) -> str | None:
    answered = [r for r in requests if r.stream == stream and r.ok and r.end < before]
    return max(answered, key=lambda r: r.end).server if answered else None


def test_reloads_on_the_master_under_load_move_only_what_the_table_moves(
    editable_master: tuple[Lab, Path],
) -> None:
    lab, copy = editable_master
    original = copy.read_text()
    plan = _plan(original)
    vrrp_before = _vrrp(lab)
    applied_before = _reloads_applied(lab)
    windows: list[tuple[Change, float, float, float, str]] = []
    prober = HttpProber(
        lab,
        interval=INTERVAL,
        timeout=1.0,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        keepalive_streams=STREAMS,
        max_seconds=300,
    )
    with prober:
        wait_until(
            lambda: (
                {r.stream for r in prober.records() if r.kind == "keepalive" and r.ok}
                == set(range(1, STREAMS + 1))
            ),
            timeout=20,
            what="every keep-alive stream answered once",
        )
        text = original
        for change in plan:
            new_text = change.edit(text)
            share = _moved_share(text, new_text)
            write_in_place(copy, new_text)
            started = time.time()
            result = lab.exec(MASTER, ["vipkeeper", "reload"], timeout=30)
            returned = time.time()
            assert result.ok, f"{change.what}: reload exited {result.exit_code}: {result.output}"
            status = director_status(lab, MASTER)
            assert status is not None
            last = status["last_reload"]
            assert last["result"] == "applied", (change.what, last)
            reported = {k: v for k, v in last["changes"].items() if v}
            assert reported == change.changes, (change.what, reported)
            if not change.changes:
                assert "nothing changed" in result.output, result.output
            windows.append((change, started, returned, share, text))
            text = new_text
            # The checkers have settled (a server added back counts once its first check
            # passed), then every stream and a new connection asked with the table that
            # follows, before the next change.
            wait_until(lambda: _all_up(lab), timeout=CHECKS_SETTLE, what="every real server up")
            settled = time.time()
            wait_until(
                lambda settled=settled: _asked_since(prober.records(), settled),  # type: ignore[misc]
                timeout=KEEPALIVE_TIMEOUT + AFTER,
                interval=0.3,
                what=f"every stream to ask again after: {change.what}",
            )
    requests = prober.requests
    assert masters(lab) == {MASTER}
    assert _vrrp(lab) == vrrp_before, "a reload moved a VRRP state"
    assert _reloads_applied(lab) == applied_before + len(plan)

    ends = [w[1] for w in windows[1:]] + [max(r.start for r in requests) + 1]
    report = []
    for (change, started, returned, share, _), until in zip(windows, ends, strict=True):
        moved = _moved(requests, started, until)
        fraction = len(moved) / STREAMS
        report.append(f"{change.what}: {len(moved)}/{STREAMS} moved (table share {share:.2f})")
        # A change that keeps the table costs nothing, not even a connection opened during it.
        quiet_from = started if share == 0 else returned
        new_failed = [
            r for r in requests if r.kind == "new" and not r.ok and quiet_from <= r.start < until
        ]
        assert new_failed == [], f"{change.what}: new connections failed: {new_failed[:3]}"
        assert fraction <= _bound(share), f"{change.what}: {report[-1]}; {moved}"
        on = {n: _server_of(requests, n, started) for n in range(1, STREAMS + 1)}
        then = {n: _server_of(requests, n, until) for n in range(1, STREAMS + 1)}
        # With no connection state a stream changes real server only by breaking.
        changed = {n for n in on if on[n] != then[n]}
        assert changed <= set(moved), f"{change.what}: {changed - set(moved)} moved silently"
        back = sorted(set(moved) - changed)  # its new connection (new port) hashed back
        if back:
            report[-1] += f"; reconnected to the same server: {back}"
        if change.what == "rs2 removed":  # exactly the flows on rs2 move
            assert set(moved) == {n for n, rs in on.items() if rs == NAME_OF[RS2]}, (on, moved)
    print("\n".join(report))
