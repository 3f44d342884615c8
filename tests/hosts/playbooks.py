"""Running the playbooks in deploy/ over the inventory, and reading their PLAY RECAP.

HOSTS_INVENTORY names the inventory (default: the hosts lab's), HOSTS_WHEELS the directory the
director role takes the wheels from (default: where `make deploy-wheels` puts them).  Paths in
the lab inventory are relative to the repository root: run from there (the make targets do).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = os.environ.get("HOSTS_INVENTORY", "deploy/inventory/hosts-lab.yml")
WHEELS = Path(os.environ.get("HOSTS_WHEELS", str(ROOT / "images/.build/wheels")))
ANSIBLE_ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(ROOT / "deploy/ansible.cfg"),
    # ansible-playbook, and the ansible-inventory testinfra's ansible:// backend runs, from the
    # virtualenv this pytest runs in
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "ANSIBLE_NOCOLOR": "1",
}
os.environ["PATH"] = ANSIBLE_ENV["PATH"]
os.environ["ANSIBLE_CONFIG"] = ANSIBLE_ENV["ANSIBLE_CONFIG"]

# One line of the PLAY RECAP: "dir1   : ok=12   changed=0    unreachable=0    failed=0 ..."
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    recap: dict[str, dict[str, int]]  # host -> {"ok": n, "changed": n, "failed": n, ...}

    def total(self, key: str) -> int:
        return sum(counts.get(key, 0) for counts in self.recap.values())

    def changed_tasks(self) -> list[str]:
        """The "changed: [host]" lines with the task each belongs to, for failure messages."""
        found, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed:"):
                found.append(f"{task}: {line}")
        return found


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    tail = output.rsplit("PLAY RECAP", 1)[-1] if "PLAY RECAP" in output else ""
    return {
        m["host"]: {k: int(v) for k, v in (p.split("=") for p in m["counts"].split())}
        for m in _RECAP.finditer(tail)
    }


def run_playbook(playbook: str, *args: str, timeout: float = 600) -> PlaybookRun:
    """ansible-playbook deploy/PLAYBOOK over the inventory, from the repository root."""
    argv = [
        "ansible-playbook",
        "-i",
        INVENTORY,
        "-e",
        f"vipkeeper_wheels_dir={WHEELS}",
        *args,
        f"deploy/{playbook}",
    ]
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    return PlaybookRun(result.returncode, output, parse_recap(output))


def testinfra_host(name: str) -> Any:
    """A testinfra host for an inventory host (`ansible://NAME`): SSH as the inventory says."""
    import testinfra

    return testinfra.get_host(f"ansible://{name}?ansible_inventory={ROOT / INVENTORY}")
