"""Every key fact is defined in one module; tests, benchmarks and the harness import it.

A definition is an assignment of a literal (`NAME = value`, at any level, annotated or not);
using the value as data in a test packet is not one. Scanned: every Python file under src/,
harness/, tests/ and bench/.
"""

from __future__ import annotations

import ast
import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vipkeeper import paths
from vipkeeper.core import timing, vrrp_numbers

ROOT = Path(__file__).resolve().parents[2]
TREES = ("src", "harness", "tests", "bench")


def _address(value: object) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Fact:
    what: str
    home: str  # the one module that defines it, relative to the checkout
    matches: Callable[[str, object], bool]  # (assigned name, literal value)


FACTS = (
    Fact(
        "the VRRP IPv4 multicast group",
        "src/vipkeeper/core/vrrp_numbers.py",
        lambda _name, value: _address(value) == vrrp_numbers.MULTICAST_V4,
    ),
    Fact(
        "the VRRP IPv6 multicast group",
        "src/vipkeeper/core/vrrp_numbers.py",
        lambda _name, value: _address(value) == vrrp_numbers.MULTICAST_V6,
    ),
    Fact(
        "the VRRP IP protocol number",
        "src/vipkeeper/core/vrrp_numbers.py",
        lambda name, value: value == vrrp_numbers.VRRP_PROTOCOL and "PROTO" in name.upper(),
    ),
    Fact(
        "the VRRPv2 advert_int limit",
        "src/vipkeeper/core/timing.py",
        lambda name, value: (
            value == timing.V2_MAX_SECONDS
            and re.search("ADVERT|INTERVAL|SECOND", name.upper()) is not None
        ),
    ),
    Fact(
        "the VRRPv3 advert_int limit",
        "src/vipkeeper/core/timing.py",
        lambda _name, value: (
            value in (timing.V3_MAX_CENTISECONDS, timing.V3_MAX_CENTISECONDS / 100)
        ),
    ),
    Fact(
        "the default control socket",
        "src/vipkeeper/paths.py",
        lambda _name, value: value == paths.DEFAULT_SOCKET,
    ),
    Fact(
        "the default configuration file",
        "src/vipkeeper/paths.py",
        lambda _name, value: value == paths.DEFAULT_CONFIG,
    ),
)


@functools.cache
def definitions(path: Path) -> list[tuple[int, str, object]]:
    """(line, name, value) of every assignment of a literal to a name in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        pairs = []
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                pairs += zip(target.elts, value.elts, strict=False)
            else:
                pairs.append((target, value))
        for each, literal in pairs:
            name = each.id if isinstance(each, ast.Name) else getattr(each, "attr", "")
            if name and isinstance(literal, ast.Constant) and not isinstance(literal.value, bool):
                found.append((node.lineno, name, literal.value))
    return found


def defining(fact: Fact, files: list[Path]) -> dict[str, list[str]]:
    """Module (relative path) -> the names in it that define `fact`."""
    where: dict[str, list[str]] = {}
    for path in files:
        for line, name, value in definitions(path):
            if fact.matches(name, value):
                where.setdefault(str(path.relative_to(ROOT)), []).append(f"{name} (line {line})")
    return where


def python_files() -> list[Path]:
    return sorted(
        p for tree in TREES for p in (ROOT / tree).rglob("*.py") if ".venv" not in p.parts
    )


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.what)
def test_a_fact_is_defined_in_its_home_module_only(fact: Fact) -> None:
    where = defining(fact, python_files())
    assert list(where) == [fact.home], f"{fact.what} is defined in {where}"


def test_the_scan_finds_a_second_definition(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text(
        'SOURCE, GROUP = "192.0.2.1", "224.0.0.18"\nclass C:\n    VRRP_PROTO: int = 112\nSOCK = "'
        + paths.DEFAULT_SOCKET
        + '"\nCONF = "'
        + paths.DEFAULT_CONFIG
        + '"\nMAX_ADVERT_SECONDS = 255\nTTL = 255\nLIMIT = 40.95\n'
    )
    found = {
        fact.what for fact in FACTS if any(fact.matches(n, v) for _, n, v in definitions(copy))
    }
    assert found == {fact.what for fact in FACTS} - {"the VRRP IPv6 multicast group"}
    assert [n for _, n, v in definitions(copy) if n == "TTL"] == ["TTL"]
    assert not FACTS[3].matches("TTL", 255)  # a hop limit of 255 is not the advert_int limit
