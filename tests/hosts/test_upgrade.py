"""The rolling upgrade (deploy/upgrade.yml) of running directors to a new wheel, under HTTP
load from the inventory's client: the BACKUP first, then the MASTER once it has handed the VIP
over.  New connections fail, if at all, only inside that one failover window; both directors
run the new version afterwards, each restarted once, the BACKUP before the MASTER.

The new wheel is this checkout's vipkeeper built again under another version (a PEP 440 local
version), next to the same dependency wheels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.probes import HttpProber
from harness.topology import REACTION_MARGIN
from tests.hosts.inventory_client import InventoryClient
from tests.hosts.playbooks import ROOT, WHEELS, PlaybookRun, run_playbook

from vipkeeper.core.timing import master_down_interval
from vipkeeper.testing.threads import Sampler

PROBE_TIMEOUT = 1.0  # s: a new connection's request timeout
POLL = 0.2  # s: how often the watcher asks each director for its state
NEW_LOCAL_VERSION = "rolling"


@pytest.fixture(scope="module")
def new_wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A wheel directory like WHEELS whose vipkeeper wheel has a new version; (dir, version)."""
    (old,) = WHEELS.glob("vipkeeper-*.whl")
    version = f"{old.name.split('-')[1].split('+')[0]}+{NEW_LOCAL_VERSION}"
    base = tmp_path_factory.mktemp("upgrade")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    init = src / "src/vipkeeper/__init__.py"  # __version__, the version's one source
    text, count = re.subn(
        r'^__version__ = "[^"]*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M
    )
    assert count == 1, f"{init}: no __version__ line"
    init.write_text(text)
    out = base / "wheels"
    shutil.copytree(WHEELS, out, ignore=shutil.ignore_patterns("vipkeeper-*.whl"))
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(out), str(src)],
        check=True,
        timeout=300,
    )
    assert len(list(out.glob("vipkeeper-*.whl"))) == 1
    return out, version


def _status(host: Any) -> dict[str, Any] | None:
    out = host.run("vipkeeper status --json")
    return json.loads(out.stdout) if out.rc == 0 else None


class StateWatcher(Sampler):
    """Asks every director for its VRRP states every POLL s over SSH.  `polls` keeps each
    round as (asked at, answered at, the MASTERs); `history` the answers whenever the set of
    MASTERs changes."""

    def __init__(self, hosts: dict[str, Any]) -> None:
        super().__init__(POLL)
        self.hosts = hosts
        self.polls: list[tuple[float, float, frozenset[str]]] = []
        self.history: list[tuple[float, frozenset[str]]] = []

    def _masters(self) -> frozenset[str]:
        found = set()
        for name, host in self.hosts.items():
            doc = _status(host)
            if doc and any(i["state"] == "MASTER" for i in doc["instances"]):
                found.add(name)
        return frozenset(found)

    def sample(self) -> None:
        asked = time.time()
        current = self._masters()
        now = time.time()
        self.polls.append((asked, now, current))
        if not self.history or self.history[-1][1] != current:
            self.history.append((now, current))


def test_rolling_upgrade_under_http_load(
    converged: PlaybookRun,
    groups: dict[str, list[str]],
    host: Callable[[str], Any],
    new_wheels: tuple[Path, str],
) -> None:
    assert converged.returncode == 0
    wheels, version = new_wheels
    directors = groups["directors"]
    before = {d: _status(host(d)) for d in directors}
    assert all(before.values()), before
    (master,) = [d for d, doc in before.items() if doc and doc["instances"][0]["state"] == "MASTER"]
    backups = [d for d in directors if d != master]
    successor = max(backups, key=lambda d: before[d]["instances"][0]["priority"])  # type: ignore[index]
    instance = before[successor]["instances"][0]  # type: ignore[index]
    handover_bound = master_down_interval(
        version=instance["version"],
        priority=instance["priority"],
        master_adver_interval=instance["advert_interval"],
    )
    vip = instance["vips"][0]["address"]
    port = before[master]["virtual_servers"][0]["port"]  # type: ignore[index]

    (client_name,) = groups["clients"]
    client = InventoryClient(client_name, host(client_name), vip=vip, vip_port=port)
    prober = HttpProber(client, interval=0.1, timeout=PROBE_TIMEOUT)  # type: ignore[arg-type]
    # The watcher's own SSH connections (testinfra hosts are not shared across threads).
    import testinfra
    from tests.hosts.playbooks import INVENTORY

    watch_hosts = {
        d: testinfra.get_host(f"ansible://{d}?ansible_inventory={ROOT / INVENTORY}")
        for d in directors
    }
    with StateWatcher(watch_hosts) as watcher, prober:
        started = time.time()
        upgrade = run_playbook("upgrade.yml", "-e", f"vipkeeper_wheels_dir={wheels}")
        finished = time.time()
        # Requests after the playbook: the service is settled.
        deadline = time.time() + 20
        while time.time() < deadline:
            if len([r for r in prober.records() if r.kind == "new" and r.start > finished]) >= 10:
                break
            time.sleep(0.2)
    assert upgrade.returncode == 0, upgrade.output[-4000:]

    after = {d: _status(host(d)) for d in directors}
    for d in directors:
        doc = after[d]
        assert doc is not None, d
        assert doc["daemon"]["version"] == version, (d, doc["daemon"])
        assert doc["daemon"]["pid"] != before[d]["daemon"]["pid"], f"{d} was not restarted"  # type: ignore[index]
        assert doc["daemon"]["started_at"] >= started
    # The handover, bracketed by the watcher: the MASTER was still MASTER when the last round
    # before its release was asked, gone when the next one was answered.
    gone = next(i for i, p in enumerate(watcher.polls) if p[0] > started and master not in p[2])
    still_up = max(p[0] for p in watcher.polls[:gone] if master in p[2])
    released = watcher.polls[gone][1]
    took_over = next(p[1] for p in watcher.polls[gone:] if successor in p[2])
    assert took_over - still_up <= handover_bound + REACTION_MARGIN, watcher.history
    # The BACKUPs were upgraded first: each started before the MASTER gave the VIP away.
    for b in backups:
        assert after[b]["daemon"]["started_at"] < released, watcher.history  # type: ignore[index]
    masters_after = [
        d for d, doc in after.items() if doc and doc["instances"][0]["state"] == "MASTER"
    ]
    assert len(masters_after) == 1, after

    new = [r for r in prober.requests if r.kind == "new"]
    failed = [r for r in new if not r.ok]
    window = (still_up - PROBE_TIMEOUT, took_over + REACTION_MARGIN)
    outside = [r for r in failed if not window[0] <= r.start <= window[1]]
    assert outside == [], (
        f"{len(outside)} of {len(new)} requests failed outside the failover window "
        f"{window[0] - started:.1f}-{window[1] - started:.1f} s: "
        f"{[(round(r.start - started, 2), r.error) for r in outside[:5]]}; "
        f"masters: {[(round(t - started, 2), sorted(m)) for t, m in watcher.history]}"
    )
    print(
        f"rolling upgrade: {len(new)} new connections, {len(failed)} failed, all inside the "
        f"handover {window[0] - started:.1f}-{window[1] - started:.1f} s; playbook "
        f"{finished - started:.1f} s; masters: "
        f"{[(round(t - started, 2), sorted(m)) for t, m in watcher.history]}"
    )
    late = [r for r in new if r.start > finished]
    assert len(late) >= 10 and all(r.ok for r in late), late
