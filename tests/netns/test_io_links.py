"""vipkeeper.io.links in a namespace: carrier loss and return and address changes on the host's
interface arrive as LinkChanged / AddressChanged facts, and the one-shot query agrees with the
kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import polled

pytestmark = pytest.mark.netns

MONITOR = """
import asyncio, dataclasses, json, sys
from vipkeeper.io.links import LinkMonitor

async def main(out):
    async with await LinkMonitor.open() as monitor:
        with open(out, "a") as log:
            log.write(json.dumps({"initial": monitor.states}) + "\\n")
            log.flush()
            async for event in monitor:
                log.write(json.dumps({type(event).__name__: dataclasses.asdict(event)}) + "\\n")
                log.flush()

asyncio.run(main(sys.argv[1]))
"""

poll = polled(10, interval=0.1)


def events(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def start_monitor(lab: Lab, host: Host, out: Path) -> None:
    lab.spawn_python(host, MONITOR, str(out))

    @poll
    def ready() -> None:
        assert events(out)[:1] == [{"initial": {"lo": True, host.ifname: True}}]

    ready()


def link_changes(out: Path) -> list[dict[str, Any]]:
    return [e["LinkChanged"] for e in events(out) if "LinkChanged" in e]


def test_carrier_loss_and_return_are_reported_once_each(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("a", ["10.0.0.1/24"])
    out = tmp_path / "events.jsonl"
    start_monitor(lab, host, out)

    lab.cut(host)

    @poll
    def went_down() -> None:
        assert link_changes(out) == [{"interface": "eth0", "up": False}]

    went_down()
    lab.restore(host)

    @poll
    def came_back() -> None:
        assert link_changes(out) == [
            {"interface": "eth0", "up": False},
            {"interface": "eth0", "up": True},
        ]

    came_back()


def test_administrative_down_is_reported(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("a", ["10.0.0.1/24"])
    out = tmp_path / "events.jsonl"
    start_monitor(lab, host, out)

    lab.run(host, "ip", "link", "set", host.ifname, "down")

    @poll
    def went_down() -> None:
        assert {"interface": "eth0", "up": False} in link_changes(out)

    went_down()


def test_address_additions_and_removals_are_reported(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("a", ["10.0.0.1/24"])
    out = tmp_path / "events.jsonl"
    start_monitor(lab, host, out)

    lab.run(host, "ip", "addr", "add", "10.0.0.7/24", "dev", host.ifname)
    lab.run(host, "ip", "addr", "del", "10.0.0.7/24", "dev", host.ifname)

    @poll
    def reported() -> None:
        changes = [e["AddressChanged"] for e in events(out) if "AddressChanged" in e]
        assert changes == [
            {"interface": "eth0", "family": 2, "address": "10.0.0.7", "prefixlen": 24,
             "added": True},
            {"interface": "eth0", "family": 2, "address": "10.0.0.7", "prefixlen": 24,
             "added": False},
        ]  # fmt: skip

    reported()


def test_link_states_reports_current_state(lab: Lab) -> None:
    up = lab.add_host("a", ["10.0.0.1/24"])
    lab.cut(up)
    code = (
        "import asyncio, json; from vipkeeper.io.links import link_states; "
        "print(json.dumps(asyncio.run(link_states())))"
    )

    @poll
    def reported() -> None:
        assert json.loads(lab.python(up, code).stdout) == {"lo": True, "eth0": False}

    reported()
