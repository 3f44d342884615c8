"""Fixtures for the Compose lab tests.

The session fixture `lab` brings the lab up (`make -f mk/lab.mk up`) when it is not running and
takes it down at the end if it brought it up or LAB_TEARDOWN=1.  Without a reachable Docker
engine the tests are skipped, except under CI=true, where that is a failure.  `healthy_lab`
puts the lab back in its starting state (harness.restore) before each test, so tests do not
depend on order.  Every test here is marked `lab`.
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

from harness import Lab, Timeline  # noqa: E402
from harness.restore import restore  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


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


def _make(target: str) -> None:
    subprocess.run(["make", "-f", "mk/lab.mk", target], cwd=ROOT, check=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
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
