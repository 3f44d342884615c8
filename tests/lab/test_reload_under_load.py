"""Twenty reloads on the MASTER under continuous HTTP load (LVS-DR on the nftables flow tables).

The MASTER director mounts a copy of its keepalived.conf (recreated once with LAB_DIRn_CONF
naming it, like the priority fault); the copy is edited and `vipkeeper reload` run in the
director, one change at a time, while the client keeps STREAMS keep-alive connections busy and
opens a new connection every INTERVAL s.  Each reload's answer, `status --json` (last_reload:
result and changes) and /metrics (vipkeeper_reloads_total) must say exactly what changed, and no
director may change VRRP state or hand the VIP over.

The copy carries a second VRRP instance, VI_RELOAD (VRID 52, VIP 172.16.9.52 on the frontend,
on the MASTER only: no other node has that VRID or address, so it is MASTER there at once and
disturbs nothing else).  The reloads: unchanged file, VI_RELOAD's priority changed and back, a
VIP added to it and removed, delay_loop (a virtual-server option) and a checker's
connect_timeout (a health-check change) changed and back, rs1's and rs2's weights changed, rs1
and rs2 each removed and added back.

New flows are placed by the Maglev table, which several of these change (a weight, a removal,
and an addition that resizes it); established flows are pinned to their real server by the
director's flow table, and a removed server drains.  So across all of them: zero failed
requests, keep-alive or new, every keep-alive stream ends on the real server it started on,
and no VRRP instance on either director changes state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import HttpProber, Lab, Request, masters, target, wait_until
from harness.faults import state_dir, write_in_place
from harness.probes import director_status
from harness.restore import restore

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


def _delay_loop(old: int, new: int) -> Change:
    return Change(
        what=f"delay_loop {old} -> {new}",
        edit=_replace(rf"(?m)^(\s*delay_loop\s+){old}\b", rf"\g<1>{new}"),
        # The real servers' checkers inherit the virtual server's delay_loop.
        changes={
            "virtual_servers_changed": [SERVICE],
            "real_servers_changed": [_rs(RS1), _rs(RS2)],
        },
    )


def _connect_timeout(old: int, new: int) -> Change:
    def edit(text: str) -> str:
        block = _rs_block(RS2).search(text)
        assert block is not None
        assert f"connect_timeout {old}\n" in block.group(1), f"rs2's connect_timeout is not {old}"
        changed = block.group(1).replace(f"connect_timeout {old}", f"connect_timeout {new}")
        return text.replace(block.group(1), changed)

    return Change(
        what=f"connect_timeout {old} -> {new} on rs2's checker",
        edit=edit,
        changes={"real_servers_changed": [_rs(RS2)]},
    )


def _reweight(address: str, old: int, new: int) -> Change:
    def edit(text: str) -> str:
        block = _rs_block(address).search(text)
        assert block is not None and re.search(rf"(?m)^\s*weight\s+{old}$", block.group(1)), (
            f"{NAME_OF[address]}'s weight is not {old}"
        )
        return _weight(address, new)(text)

    return Change(
        what=f"{NAME_OF[address]} weight {old} -> {new}",
        edit=edit,
        changes={"real_servers_changed": [_rs(address)]},
    )


def _remove_and_add(address: str, original: str) -> list[Change]:
    name = NAME_OF[address]
    return [
        Change(
            what=f"{name} removed",
            edit=_without(address),
            changes={"real_servers_removed": [_rs(address)]},
        ),
        Change(
            what=f"{name} added back",
            edit=_with(address, original),
            changes={"real_servers_added": [_rs(address)]},
        ),
    ]


UNCHANGED = Change(what="unchanged file", edit=lambda t: t, changes={})


OTHER = "VI_RELOAD"  # the second instance, on the MASTER's copy only
OTHER_VIP = "172.16.9.52"
ADDED_VIP = "172.16.9.53"


def _other(priority: int, vips: tuple[str, ...] = (OTHER_VIP,)) -> str:
    addresses = "".join(f"        {vip}/16 dev eth0\n" for vip in vips)
    return (
        f"vrrp_instance {OTHER} {{\n    state BACKUP\n    interface eth0\n"
        f"    virtual_router_id 52\n    priority {priority}\n    advert_int 1\n"
        f"    virtual_ipaddress {{\n{addresses}    }}\n}}\n"
    )


def _with_other(text: str) -> str:
    """The configuration with VI_RELOAD ahead of the virtual server."""
    head, found, tail = text.partition("\nvirtual_server ")
    assert found, "no virtual_server block"
    return f"{head}\n{_other(100)}{found}{tail}"


def _other_as(priority: int, vips: tuple[str, ...], what: str) -> Change:
    def edit(text: str) -> str:
        changed, count = re.subn(rf"vrrp_instance {OTHER} {{\n.*?\n}}\n", _other(priority, vips),
                                 text, flags=re.S)  # fmt: skip
        assert count == 1, f"no {OTHER} block"
        return changed

    return Change(what=what, edit=edit, changes={"instances_changed": [OTHER]})


def _other_vips(text: str) -> list[str]:
    """VI_RELOAD's VIPs in the configuration `text`."""
    block = re.search(rf"vrrp_instance {OTHER} {{\n(.*?)\n}}\n", text, re.S)
    assert block is not None, f"no {OTHER} block"
    return re.findall(r"^\s+(\S+)/16 dev eth0$", block.group(1), re.M)


def _plan(original: str) -> list[Change]:
    return [
        UNCHANGED,
        _other_as(90, (OTHER_VIP,), f"{OTHER} priority 100 -> 90"),
        _other_as(90, (OTHER_VIP, ADDED_VIP), f"VIP {ADDED_VIP} added to {OTHER}"),
        _delay_loop(2, 3),
        _connect_timeout(1, 2),
        _reweight(RS1, 1, 2),
        _connect_timeout(2, 1),
        *_remove_and_add(RS2, original),  # added back as configured at first
        UNCHANGED,
        _other_as(90, (OTHER_VIP,), f"VIP {ADDED_VIP} removed from {OTHER}"),
        _reweight(RS1, 2, 1),
        *_remove_and_add(RS1, original),
        _delay_loop(3, 2),
        _other_as(100, (OTHER_VIP,), f"{OTHER} priority 90 -> 100"),
        _reweight(RS2, 1, 3),
        *_remove_and_add(RS2, original),  # back at its configured weight 1
        UNCHANGED,
    ]


RELOADS = 20


@pytest.fixture
def editable_master(healthy_lab: Lab) -> Iterator[tuple[Lab, Path]]:
    """The MASTER recreated to mount a copy of its configuration with VI_RELOAD added (the VIP
    moves to the BACKUP and back while it restarts); recreated with its own file afterwards,
    even on failure."""
    lab = healthy_lab
    assert DIRECTOR.config_env is not None, "compose.yaml names no variable for its config"
    copy = state_dir(lab) / f"{MASTER}.reload-under-load.keepalived.conf"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(_with_other(Path(DIRECTOR.config_path).read_text()))
    try:
        lab.compose_up((MASTER,), env={DIRECTOR.config_env: str(copy)})
        restore(lab)
        wait_until(
            lambda: _state(lab, MASTER, OTHER) == "MASTER",
            timeout=30,
            what=f"{MASTER}'s daemon to answer with {OTHER} MASTER (it has no peer)",
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


def _state(lab: Lab, director: str, name: str) -> str | None:
    status = director_status(lab, director)
    found = [i for i in (status or {}).get("instances") or [] if i["name"] == name]
    return str(found[0]["state"]) if found else None


def _vrrp(lab: Lab) -> dict[tuple[str, str], tuple[object, object, object]]:
    """Per director and instance: (state, became_master, last transition time)."""
    seen = {}
    for director in TOPO.director_names:
        status = director_status(lab, director)
        assert status is not None, f"{director}: no status"
        for instance in status["instances"]:
            last = instance["last_transition"]
            seen[(director, instance["name"])] = (
                instance["state"], instance["became_master"], last["time"]
            )  # fmt: skip
    return seen


def _failed(requests: list[Request], since: float, until: float) -> list[Request]:
    return [r for r in requests if not r.ok and since <= r.start < until]


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


def test_twenty_reloads_on_the_master_under_load_fail_no_request_and_move_no_stream(
    editable_master: tuple[Lab, Path],
) -> None:
    lab, copy = editable_master
    original = copy.read_text()
    plan = _plan(original)
    assert len(plan) == RELOADS
    vrrp_before = _vrrp(lab)
    applied_before = _reloads_applied(lab)
    windows: list[tuple[Change, float]] = []
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
            write_in_place(copy, new_text)
            started = time.time()
            result = lab.exec(MASTER, ["vipkeeper", "reload"], timeout=30)
            assert result.ok, f"{change.what}: reload exited {result.exit_code}: {result.output}"
            status = director_status(lab, MASTER)
            assert status is not None
            last = status["last_reload"]
            assert last["result"] == "applied", (change.what, last)
            reported = {k: sorted(v) for k, v in last["changes"].items() if v}
            assert reported == change.changes, (change.what, reported)
            # The reload's own answer, as `vipkeeper reload` prints it: one line per change.
            printed = {line.strip() for line in result.output.splitlines()[1:] if line.strip()}
            expected = {
                f"{verb} {what.removesuffix('s').replace('_', ' ')} {name}"
                for key, names in change.changes.items()
                for what, verb in [key.rsplit("_", 1)]
                for name in names
            }
            assert printed == expected, (change.what, result.output)
            if not change.changes:
                assert "nothing changed" in result.output, result.output
            other = next(i for i in status["instances"] if i["name"] == OTHER)
            configured = _other_vips(new_text)
            assert [(v["address"], v["present"]) for v in other["vips"]] == [
                (address, True) for address in configured
            ], (change.what, other["vips"])
            windows.append((change, started))
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
    first = min(started for _, started in windows)
    for (change, started), until in zip(windows, ends, strict=True):
        failed = _failed(requests, started, until)
        assert failed == [], f"{change.what}: failed requests: {failed[:3]}"
    # Every keep-alive stream ends on the real server it had before the first reload.
    on = {n: _server_of(requests, n, first) for n in range(1, STREAMS + 1)}
    then = {n: _server_of(requests, n, ends[-1]) for n in range(1, STREAMS + 1)}
    assert on == then, {n: (on[n], then[n]) for n in on if on[n] != then[n]}
    assert set(on.values()) == {NAME_OF[RS1], NAME_OF[RS2]}  # both servers carried streams
    asked = [r for r in requests if r.start >= first]
    kept, new = (sum(r.kind == kind for r in asked) for kind in ("keepalive", "new"))
    print(f"{len(plan)} reloads: {kept} keep-alive and {new} new-connection requests, none failed")
