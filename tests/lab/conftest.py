"""Fixtures for the lab tests, over the Compose lab (the default) or an Ansible inventory.

`pytest tests/lab` runs against the Compose lab: the session fixture `lab` brings it up
(`make -f mk/lab.mk up`) when it is not running and takes it down at the end if it brought it
up or LAB_TEARDOWN=1.  Without a reachable Docker engine the tests are skipped, except under
CI=true, where that is a failure.

`pytest tests/lab --inventory=PATH` runs the same tests against the hosts of an Ansible
inventory (harness.inventory: groups directors, realservers, clients), reached with testinfra.
Read-only by default: tests that break something (marked `faults`) are skipped, with that
reason, unless `--allow-faults` is given; tests that need the Compose lab itself (marked
`compose_only`) are skipped with theirs.  The hosts are neither brought up nor taken down.

`healthy_lab` puts the lab back in its starting state (harness.restore) before each test, so
tests do not depend on order; on a read-only inventory it only waits for that state.  Every
test here is marked `lab`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the harness package lives at the repository root
    sys.path.insert(0, str(ROOT))

from harness import Lab, Timeline, target  # noqa: E402
from harness.restore import restore  # noqa: E402

FAULTS_MARK = "faults"
COMPOSE_ONLY_MARK = "compose_only"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vipkeeper lab")
    group.addoption(
        "--inventory",
        metavar="PATH",
        help="run the lab tests against the hosts of this Ansible inventory instead of the "
        "Compose lab (groups: directors, realservers, clients)",
    )
    group.addoption(
        "--allow-faults",
        action="store_true",
        help="with --inventory: let the tests break the hosts (kill a director, stop httpd, "
        "take a link down) and undo it; without it only read-only checks run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{FAULTS_MARK}: applies faults; on an inventory only with --allow-faults"
    )
    config.addinivalue_line(
        "markers", f"{COMPOSE_ONLY_MARK}(reason): needs the Compose lab itself (not an inventory)"
    )
    inventory = config.getoption("--inventory", default=None)
    if not inventory:
        return
    from harness.inventory import InventoryLab, LabError

    path = Path(inventory).resolve()
    # testinfra runs ansible-inventory from PATH: the one installed next to this Python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        lab = InventoryLab(path, allow_faults=bool(config.getoption("--allow-faults")))
    except (LabError, ValueError) as exc:
        raise pytest.UsageError(f"--inventory={inventory}: {exc}") from exc
    target.select(lab)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    inventory = target.kind() == "inventory"
    allow_faults = bool(config.getoption("--allow-faults"))
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.lab)
        if not inventory:
            continue
        compose_only = item.get_closest_marker(COMPOSE_ONLY_MARK)
        if compose_only is not None:
            reason = compose_only.args[0] if compose_only.args else "needs the Compose lab"
            item.add_marker(pytest.mark.skip(reason=f"Compose lab only: {reason}"))
        elif item.get_closest_marker(FAULTS_MARK) is not None and not allow_faults:
            item.add_marker(
                pytest.mark.skip(
                    reason="changes the hosts (a fault): read-only run, add --allow-faults"
                )
            )


def _docker_or_skip() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception as exc:
        reason = f"Docker engine unreachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the lab tests must run)", pytrace=False)
        pytest.skip(reason)


def _make(target_name: str) -> None:
    subprocess.run(["make", "-f", "mk/lab.mk", target_name], cwd=ROOT, check=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    selected = target.selected()
    if selected is not None:  # an inventory's hosts: not ours to bring up or down
        yield selected
        return
    client = _docker_or_skip()
    lab = Lab(client=client)
    brought_up = False
    # Not there (stopped ones `restore` restarts).
    if set(lab.containers()) != set(lab.topology.services):
        _make("up")
        brought_up = True
    try:
        yield lab
    finally:
        if brought_up or os.environ.get("LAB_TEARDOWN") == "1":
            _make("down")


@pytest.fixture
def healthy_lab(lab: Lab) -> Lab:
    restore(lab)
    return lab


@pytest.fixture
def timeline(request: pytest.FixtureRequest) -> Iterator[Timeline]:
    """A timeline named after the test, written to artifacts/lab/ (JSON + PNG) at teardown."""
    tl = Timeline(name=request.node.name)
    yield tl
    tl.write()
