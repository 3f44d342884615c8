"""Fixtures for the workshop suite: the lab fixtures of tests/lab (the session's lab, brought
up when it is not running; `healthy_lab`, the start state before each test).  Tests that need
the lab are marked `lab`; the others (pages parsed, the live view drawn from fakes) run
without Docker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Lab
from harness.faults import heal_all
from harness.restore import restore
from tests.lab.conftest import healthy_lab, lab  # noqa: F401  (fixtures used by name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


@pytest.fixture
def healed_after(lab: Lab) -> Iterator[Lab]:  # noqa: F811
    """The start state before; every recorded or present fault undone after, even on failure
    (the next test's start waits for the start state)."""
    restore(lab)
    try:
        yield lab
    finally:
        for _ in heal_all(lab):
            pass
