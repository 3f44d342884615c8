"""Read the set-up step's Python facts: which extras to install, and what the lock leaves unpinned.

    extras.py PYPROJECT                  print every extra of [project.optional-dependencies],
                                         comma-separated (the virtualenv installs all of them)
    extras.py --unpinned CONSTRAINTS     read `pip freeze` on stdin; print each installed package
                                         whose name and version CONSTRAINTS does not pin

Standard library only: it runs before anything is installed.  It never installs or writes.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def canonical(name: str) -> str:
    """A distribution name as pip compares it (PEP 503 normalisation)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    """`name==version` lines (comments and blanks ignored) as {canonical name: version}."""
    found: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[canonical(name)] = version.strip()
    return found


def extras(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    return sorted(project.get("optional-dependencies", {}))


def unpinned(installed: dict[str, str], constraints: dict[str, str]) -> list[str]:
    return sorted(
        f"{name}=={version}"
        for name, version in installed.items()
        if constraints.get(name) != version
    )


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--unpinned":
        constraints = pins(Path(argv[1]).read_text().splitlines())
        print(" ".join(unpinned(pins(sys.stdin.read().splitlines()), constraints)))
        return 0
    if len(argv) == 1:
        print(",".join(extras(Path(argv[0]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
