"""The core stays sans-I/O: only the standard library, and none of its I/O or clock modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import vipkeeper.core

CORE = Path(vipkeeper.core.__file__).parent
FORBIDDEN = {
    "socket",
    "asyncio",
    "time",
    "os",
    "random",
    "subprocess",
    "pyroute2",
    "threading",
    "select",
}
CORE_FILES = sorted(CORE.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("vipkeeper.core")
            elif node.module:
                names.add(node.module)
    return names


def test_core_has_modules_to_check():
    assert {"vrrp.py", "vrrp_wire.py", "timing.py", "track.py", "sync_group.py"} <= {
        p.name for p in CORE_FILES
    }


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_imports_only_pure_standard_library(path):
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "vipkeeper":
            assert name.startswith("vipkeeper.core"), f"{path.name} imports {name} outside the core"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{path.name} imports third-party {name}"
            )


def test_the_checker_catches_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom time import monotonic\n")
    assert {"os.path", "time"} <= imported_modules(bad)
