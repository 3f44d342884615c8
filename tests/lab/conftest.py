"""Fixtures for the Compose lab tests.

The session fixture `lab` brings the lab up (`make -f mk/lab.mk up`) when it is not running and
takes it down at the end if it brought it up or LAB_TEARDOWN=1.  Without a reachable Docker
engine the tests are skipped, except under CI=true, where that is a failure.  `healthy_lab`
puts the lab back in its starting state before each test, so tests do not depend on order.
Every test here is marked `lab`.
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

from harness import Faults, Lab, Timeline, masters, servers_answering, wait_until  # noqa: E402
from harness.topology import DIRECTORS, PREFERRED_MASTER, REAL_SERVERS  # noqa: E402

SERVICES = (*DIRECTORS, *REAL_SERVERS, "client")
UP_TIMEOUT = 60.0  # s: containers started -> one master and HTTP through the VIP


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
    if set(lab.containers()) != set(SERVICES):  # not there (stopped ones `restore` restarts)
        _make("up")
        brought_up = True
    try:
        yield lab
    finally:
        if brought_up or os.environ.get("LAB_TEARDOWN") == "1":
            _make("down")


def restore(lab: Lab) -> None:
    """Undo whatever a test may have done, then wait for the starting state: every container
    running, VRRP unpartitioned, ARP suppression and httpd on, the preferred master holding the
    VIP alone, and both real servers answering."""
    faults = Faults(lab)
    for service in SERVICES:
        state = lab.state(service)
        if state == "paused":
            lab.unpause(service)
        elif state != "running":
            lab.start(service)
    wait_until(lambda: lab.is_running(SERVICES), timeout=30, what="all lab containers running")
    faults.heal_vrrp()
    for rs in REAL_SERVERS:
        if not lab.exec(rs, ["vipset.sh", "status"]).ok:
            faults.arp_suppression(rs, on=True)
        if not lab.exec(rs, ["sh", "-c", "apache2ctl status >/dev/null 2>&1 || pgrep apache2"]).ok:
            faults.httpd_up(rs)
    wait_until(
        lambda: masters(lab) == {PREFERRED_MASTER},
        timeout=UP_TIMEOUT,
        interval=0.3,
        what=f"{PREFERRED_MASTER} alone to hold the VIP",
    )
    wait_until(
        lambda: set(servers_answering(lab, requests=10)) == set(REAL_SERVERS),
        timeout=UP_TIMEOUT,
        interval=0.5,
        what="both real servers answering, no failures",
    )


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
