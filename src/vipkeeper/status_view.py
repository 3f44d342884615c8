"""`vipkeeper status` and `vipkeeper reload` on the operator's terminal.

Owns how a status document and a reload answer are shown to a person (`rich` tables) and the
commands' exit codes: 0 answered (status) or applied (reload), 1 refused, 2 no daemon answered.
Must never: change the document it shows (`--json` prints exactly what the daemon sent).
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vipkeeper.control import ControlError, request

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2

_STATE_STYLES = {"MASTER": "bold green", "BACKUP": "cyan", "FAULT": "bold red", "INIT": "yellow"}


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(epoch: float, now: float) -> str:
    seconds = max(0, int(now - epoch))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def render_status(document: Mapping[str, Any], console: Console) -> None:
    now = document["daemon"]["now"]
    config = document["config"]
    console.print(
        f"vipkeeper {document['daemon']['version']} pid {document['daemon']['pid']}, "
        f"up since {_when(document['daemon']['started_at'])}"
    )
    console.print(f"config {config['file']} sha256 {config['sha256'][:16]}")
    last = document.get("last_reload")
    if last is not None:
        console.print(f"last reload {_when(last['time'])}: {last['result']}")
        for error in last["errors"]:
            console.print(f"  [red]{escape(error)}[/red]")

    instances = Table(title="VRRP instances", title_justify="left")
    for column in ("instance", "state", "prio", "eff", "master", "advert", "VIPs", "since",
                   "why", "sent/rcvd", "errors"):  # fmt: skip
        instances.add_column(column)
    for item in document["instances"]:
        state = item["state"]
        vips = " ".join(
            f"{v['address']}{'' if v['present'] else ' (absent)'}" for v in item["vips"]
        )
        changed_by = [t for t in item["tracking"] if not t["up"]]
        effective = str(item["effective_priority"])
        if changed_by:
            effective += " (" + ", ".join(f"{t['kind']} {t['name']} down" for t in changed_by) + ")"
        errors = sum(item["errors"].values())
        transition = item["last_transition"]
        name = item["name"] + (f" [{item['sync_group']}]" if item["sync_group"] else "")
        instances.add_row(
            name,
            f"[{_STATE_STYLES.get(state, '')}]{state}[/]",
            str(item["priority"]),
            effective,
            item["master_address"] or "-",
            f"{item['master_advert_interval']:g}s",
            vips or "-",
            _ago(transition["time"], now),
            escape(transition["reason"]),
            f"{item['adverts']['sent']}/{item['adverts']['received']}",
            str(errors),
        )
    console.print(instances)

    for group in document["sync_groups"]:
        console.print(
            f"sync group {group['name']}: {group['state']} ({', '.join(group['instances'])})"
        )

    for vs in document["virtual_servers"]:
        quorum = "quorum up" if vs["quorum_up"] else "[red]quorum lost[/red]"
        table = Table(
            title=f"{vs['name']}  {vs['scheduler']} {vs['method']} on {vs['data_plane'] or '-'}, "
            f"{quorum}",
            title_justify="left",
        )
        for column in ("real server", "weight", "health", "in pool", "last check", "latency"):
            table.add_column(column)
        for rs in vs["real_servers"]:
            check = rs["last_check"]
            health = rs["health"]
            style = "green" if health == "up" else "red"
            table.add_row(
                f"{rs['address']}:{rs['port']}",
                f"{rs['effective_weight']}/{rs['weight']}",
                f"[{style}]{health}[/]",
                "yes" if rs["in_pool"] else "no",
                "-"
                if check is None
                else f"{check['result']} {_ago(check['time'], now)}: {check['detail']}",
                "-" if check is None else f"{check['latency'] * 1000:.1f} ms",
            )
        sorry = vs["sorry_server"]
        if sorry is not None:
            table.add_row(
                f"{sorry['address']}:{sorry['port']} (sorry)",
                "-",
                "active" if sorry["active"] else "standby",
                "yes" if sorry["active"] else "no",
                "-",
                "-",
            )
        console.print(table)


def render_changes(changes: Mapping[str, Any], console: Console) -> None:
    """What a reload changed: a line per added / removed / changed item, or 'nothing changed'."""
    lines = [
        f"{verb} {what.replace('_', ' ')} {name}"
        for what in ("instance", "virtual_server", "real_server")
        for verb in ("added", "removed", "changed")
        for name in changes.get(f"{what}s_{verb}", ())
    ]
    if not lines:
        console.print("configuration reloaded: nothing changed")
        return
    console.print("configuration reloaded:")
    for line in lines:
        console.print(f"  {line}", markup=False)


def _console(stream: TextIO) -> Console:
    return Console(file=stream, highlight=False, soft_wrap=False)


def _ask(socket_path: str, command: str) -> dict[str, Any] | int:
    """The daemon's answer to `command`, or the exit code when it could not be had (said on
    stderr)."""
    try:
        return request(socket_path, command)
    except ControlError as exc:
        print(f"vipkeeper {command}: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.code == "unreachable" else EXIT_REFUSED


def run_status(socket_path: str, *, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    document = _ask(socket_path, "status")
    if isinstance(document, int):
        return document
    if as_json:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        render_status(document, _console(out))
    return EXIT_OK


def run_reload(socket_path: str, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    answer = _ask(socket_path, "reload")
    if isinstance(answer, int):
        return answer
    console = _console(out)
    if answer["result"] == "applied":
        render_changes(answer["changes"], console)
        return EXIT_OK
    errors: Sequence[str] = answer["errors"]
    console.print("reload refused; the running configuration stays in force:")
    for error in errors:
        console.print(f"  {error}", markup=False)
    return EXIT_REFUSED
