"""The keyword tables agree with keepalived: every keyword listed as known is known to keepalived.

The comparison runs keepalived's own config test (`keepalived -t`) when keepalived is installed,
so a typo in the tables (which would turn a user's typo into a mere warning) cannot hide.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vipkeeper.config import keywords

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
# Documented in keepalived.conf(5) 2.2.x but absent from the 2.2.7 binary or its build options.
NEWER_OR_OPTIONAL = frozenset({"notify_deleted", "dynamic", "vrrp_ipsets"})
# Arguments that make keepalived -t touch the file system; their names are still checked above.
SKIPPED = frozenset(
    {
        "config_save_dir",
        "tmp_config_directory",
        "reload_file",
        "reload_time_file",
        "reload_check_config",
        "umask",
    }
)
NAMED = {
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "track_file",
    "vrrp_track_process",
    "bfd_instance",
    "track_group",
}


def body(schema_name: str, depth: int) -> str:
    lines = []
    for name, sub in keywords.SCHEMAS[schema_name].keywords.items():
        if name in SKIPPED:
            continue
        if sub is None:
            lines.append(f"{name} 1")
        elif sub == keywords.LINES:
            lines.append(f"{name} {{\n}}")
        elif depth < 4:
            head = (
                " X"
                if sub in NAMED
                else (" 10.0.0.1 80" if sub in ("virtual_server", "real_server") else "")
            )
            lines.append(f"{name}{head} {{\n{body(sub, depth + 1)}\n}}")
    return "\n".join(lines)


def test_vipkeeper_extensions_are_not_keepalived_keywords() -> None:
    for block, names in keywords.VIPKEEPER_EXTENSIONS.items():
        assert not any(keywords.SCHEMAS[block].knows(name) for name in names)


def test_every_alias_and_unsupported_reason_names_a_known_keyword() -> None:
    known = {name for schema in keywords.SCHEMAS.values() for name in schema.keywords}
    assert set(keywords.ALIASES) <= known
    assert set(keywords.UNSUPPORTED_REASONS) <= known


@pytest.mark.skipif(not Path(KEEPALIVED).exists(), reason="keepalived is not installed")
def test_keepalived_knows_every_keyword_in_the_tables(tmp_path: Path) -> None:
    unknown: set[str] = set()
    for top, sub in keywords.SCHEMAS[keywords.TOP].keywords.items():
        if sub is None or sub == keywords.LINES:
            continue
        head = " X" if sub in NAMED else (" 10.0.0.1 80" if sub == "virtual_server" else "")
        path = tmp_path / f"{top}.conf"
        path.write_text(f"{top}{head} {{\n{body(sub, 1)}\n}}\n")
        completed = subprocess.run(
            [KEEPALIVED, "-t", "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        unknown |= set(
            re.findall(r"Unknown keyword '([^']+)'", completed.stdout + completed.stderr)
        )
    assert unknown <= NEWER_OR_OPTIONAL, unknown - NEWER_OR_OPTIONAL
