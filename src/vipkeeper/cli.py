"""Command line: `vipkeeper check`, `vipkeeper run`, `vipkeeper status`, `vipkeeper reload`.

This module only parses arguments and dispatches; each command lives with the code it drives
(`vipkeeper.config.check` for `check`, `vipkeeper.launch` for `run`, `vipkeeper.status_view`
for `status` and `reload`, which talk to the daemon through `vipkeeper.control`).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from vipkeeper import __version__
from vipkeeper.paths import DEFAULT_CONFIG, DEFAULT_SOCKET

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    from typing import Any


def _listen(text: str) -> tuple[str, int]:
    from vipkeeper.metrics import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's help formatter, as wide as the terminal (COLUMNS, else the terminal, else 80).

    argparse makes a formatter for every argument added; one left to find the width itself
    imports shutil, and its compression modules with it: 8 million instructions, a twelfth of
    the command line's start-up.
    """
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        stdout = sys.__stdout__
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout else 0
        except (ValueError, OSError):  # not a terminal
            columns = 0
    if columns <= 0:  # a terminal can report a width of 0
        columns = 80
    return argparse.HelpFormatter(prog, width=columns - 2)  # argparse's own margin


class _Parser(argparse.ArgumentParser):
    """The command line's parsers, each formatting its help with `_formatter`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(formatter_class=_formatter, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vipkeeper",
        description="VRRP high availability and LVS load balancing, keepalived.conf compatible.",
    )
    parser.add_argument("--version", action="version", version=f"vipkeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # of _Parser too

    check = sub.add_parser("check", help="validate a keepalived.conf; exit 0 if usable, 1 if not")
    check.add_argument("-f", "--config-file", default=DEFAULT_CONFIG, metavar="FILE")

    control = _Parser(add_help=False)
    control.add_argument(
        "--control-socket",
        default=DEFAULT_SOCKET,
        metavar="PATH",
        help=f"the daemon's control socket (default {DEFAULT_SOCKET}; on run, '' serves none)",
    )

    run = sub.add_parser("run", parents=[control], help="run the director in the foreground")
    run.add_argument("-f", "--config-file", default=DEFAULT_CONFIG, metavar="FILE")
    run.add_argument("--pidfile", default=None, metavar="FILE")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    run.add_argument(
        "--metrics-listen",
        type=_listen,
        default=None,
        metavar="ADDR:PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)",
    )
    run.add_argument(
        "--no-autopilot",
        dest="autopilot",
        action="store_false",
        help="keep steady Masters and Backups on the event loop instead of the autopilot thread",
    )

    run.add_argument(
        "-I",
        "--dont-release-ipvs",
        dest="release_ipvs",
        action="store_false",
        help="leave the virtual servers in the LVS data plane on stop (keepalived's -I)",
    )

    status = sub.add_parser(
        "status", parents=[control], help="show the running daemon's instances and servers"
    )
    status.add_argument(
        "--json", action="store_true", help="print the status document (docs/status.schema.json)"
    )

    sub.add_parser(
        "reload",
        parents=[control],
        help="reload the running daemon's configuration; exit 0 if applied, 1 if refused",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from vipkeeper.config.check import run_check
        from vipkeeper.director import describe_data_plane

        return run_check(args.config_file, sys.stderr, describe=describe_data_plane)
    if args.command == "run":
        # Start-up creates hundreds of classes and no garbage worth collecting: the collector
        # stays off until the daemon is loaded (launch.import_daemon), about a tenth less CPU.
        gc.disable()
        from vipkeeper.launch import run

        return run(args)
    if args.command == "status":
        from vipkeeper.status_view import run_status

        return run_status(args.control_socket, as_json=args.json)
    if args.command == "reload":
        from vipkeeper.status_view import run_reload

        return run_reload(args.control_socket)
    raise AssertionError(f"unhandled command {args.command!r}")
