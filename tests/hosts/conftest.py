"""Fixtures for the deployment tests: the playbooks in deploy/ run against the hosts lab.

The hosts (lab/hosts/compose.yaml) must be up and bare: `make test-hosts` brings them up, runs
this suite and takes them down; by hand, `make hosts-up` first.  The suite follows Molecule's
sequence over one deployment: converge, idempotence, verify (testinfra over the inventory,
`ansible://`), then changes to the running deployment (a reload, a refused template, a rolling
upgrade), in file order.  Without reachable hosts the tests are skipped, except under CI=true,
where that is a failure.  Every test here is marked `hosts`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.hosts.playbooks import (
    ANSIBLE_ENV,
    INVENTORY,
    ROOT,
    PlaybookRun,
    run_playbook,
    testinfra_host,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.hosts)


def _hosts_or_skip() -> None:
    result = subprocess.run(
        ["ansible", "all", "-i", INVENTORY, "-m", "ansible.builtin.ping"],
        cwd=ROOT,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        reason = f"the hosts in {INVENTORY} do not answer Ansible (make hosts-up):\n{result.stdout}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the hosts tests must run)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def converged() -> PlaybookRun:
    """The first run of deploy/site.yml over the bare hosts."""
    _hosts_or_skip()
    return run_playbook("site.yml")


@pytest.fixture(scope="session")
def host() -> Callable[[str], Any]:
    """A testinfra host over the inventory (`ansible://NAME`), by inventory name."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = testinfra_host(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def groups() -> dict[str, list[str]]:
    """The inventory's groups the suite uses: directors, realservers, clients."""
    from testinfra.utils.ansible_runner import AnsibleRunner

    runner = AnsibleRunner(str(ROOT / INVENTORY))
    found = {g: runner.get_hosts(g) for g in ("directors", "realservers", "clients")}
    assert found["directors"] and found["realservers"] and len(found["clients"]) == 1, found
    return found
