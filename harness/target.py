"""Which lab the lab tests run against: the Compose lab (the default) or the hosts of an Ansible
inventory (`pytest tests/lab --inventory=PATH`).

Owns: the one selected lab of a test session and its topology, which test modules read when
they are imported (their parameters come from it).  Must never: pick a lab by itself; only
tests/lab/conftest.py (or a tool) selects one.
"""

from __future__ import annotations

from typing import Any

from harness.topology import Topology, lab_topology

_selected: list[Any] = []


def select(lab: Any) -> None:
    """Make `lab` (a harness.lab.Lab or a harness.inventory.InventoryLab) the session's lab."""
    _selected[:] = [lab]


def selected() -> Any | None:
    """The selected lab, or None when none was selected (the Compose lab is then used)."""
    return _selected[0] if _selected else None


def topology() -> Topology:
    """The selected lab's topology; the Compose lab's when none was selected."""
    lab = selected()
    return lab.topology if lab is not None else lab_topology()


def kind() -> str:
    """ "inventory" or "compose"."""
    lab = selected()
    return str(lab.kind) if lab is not None else "compose"
