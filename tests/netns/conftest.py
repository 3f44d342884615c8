"""Fixtures for the network-namespace tests: root and iproute2 required, one `Lab` per test,
a directory an unprivileged daemon can reach."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipkeeper.testing.netns import Lab

# Every daemon these tests start inherits it: one that will not stop is sent SIGABRT
# (DaemonProcess.stop) and writes every thread's stack into its log.
os.environ.setdefault("PYTHONFAULTHANDLER", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if shutil.which("ip") is None:
        missing.append("iproute2")
    if not missing:
        return
    if os.environ.get("CI") == "true":
        # In CI these tests are the proof; never let them vanish as skips.
        raise pytest.UsageError(f"CI=true but the netns tests need {' and '.join(missing)}")
    skip = pytest.mark.skip(reason=f"netns tests need {' and '.join(missing)}")
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(skip)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A fresh lab (bridge namespace, no hosts yet); everything it made is gone afterwards."""
    with Lab(workdir=tmp_path / "lab") as built:
        yield built


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another (unprivileged) user can traverse: pytest's tmp_path is root's
    alone."""
    path = Path(tempfile.mkdtemp(prefix="vk-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
