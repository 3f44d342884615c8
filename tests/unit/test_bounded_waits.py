"""The daemon bounds its waits with `asyncio.timeout`, never `asyncio.wait_for`.

In CPython 3.11, `wait_for` can swallow a cancellation that arrives in the same loop iteration as
the awaited result: the cancelled task carries on as if nothing happened, and a stopping daemon
waits on it for ever (seen as a hang at stop in the director's apply loop). `asyncio.timeout`
cancels the task itself and lets a cancellation from outside through. Scanned: the daemon's
package, without its test infrastructure (`vipkeeper.testing`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import vipkeeper

PACKAGE = Path(vipkeeper.__file__).parent


def _wait_for_calls(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "wait_for"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "asyncio"
        ):
            lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_wait_for_call() -> None:
    assert _wait_for_calls(ast.parse("import asyncio\nawait asyncio.wait_for(f(), 1)\n")) == [2]


def test_no_module_of_the_daemon_waits_with_wait_for() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "testing" in path.relative_to(PACKAGE).parts:
            continue
        for line in _wait_for_calls(ast.parse(path.read_text(), filename=str(path))):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert not found, f"asyncio.wait_for in the daemon (use asyncio.timeout): {found}"
