"""The soak suite: root, iproute2 and nftables required."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [
        need
        for need, ok in (
            ("root", os.geteuid() == 0),
            ("iproute2", shutil.which("ip") is not None),
            ("nftables", shutil.which("nft") is not None),
        )
        if not ok
    ]
    if not missing:
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(f"CI=true but the soak needs {' and '.join(missing)}")
    skip = pytest.mark.skip(reason=f"the soak needs {' and '.join(missing)}")
    for item in items:
        item.add_marker(skip)
