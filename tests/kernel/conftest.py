"""tests/kernel runs only inside the QEMU guest that `make test-kernel` boots (tests/kernel/vm.sh).

The guest sets VIPKEEPER_KERNEL_VM to the kernel release it booted; anywhere else (the host, or
a host whose kernel merely happens to have IPVS) these tests would program the host's kernel, so
they are refused: skipped with the reason outside CI, a usage error under CI=true, where they
must run in the guest or fail. In the guest under CI=true, a test that skips fails instead.

Python in the emulated guest is about 50x slower than on the host: every module shares one
topology, and every bound here is generous.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent

IN_GUEST = os.environ.get("VIPKEEPER_KERNEL_VM") == os.uname().release


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in Path(item.fspath).parents]
    for item in ours:
        item.add_marker(pytest.mark.kernel)
    if IN_GUEST or not ours:
        return
    reason = "tests/kernel runs only inside the test VM: make test-kernel"
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(f"CI=true: {reason} (never against the host's kernel)")
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if IN_GUEST and os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a kernel test may not skip ({report.longrepr})"
