"""Command line: `vipkeeper check`, `vipkeeper run`.

This module only parses arguments and dispatches; each command lives with the code it drives
(`vipkeeper.config.check` for `check`, `vipkeeper.daemon` for `run`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vipkeeper import __version__

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vipkeeper",
        description="VRRP high availability and LVS load balancing, keepalived.conf compatible.",
    )
    parser.add_argument("--version", action="version", version=f"vipkeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a keepalived.conf; exit 0 if usable, 1 if not")
    check.add_argument("-f", "--config-file", default=DEFAULT_CONFIG, metavar="FILE")

    run = sub.add_parser("run", help="run the director in the foreground")
    run.add_argument("-f", "--config-file", default=DEFAULT_CONFIG, metavar="FILE")
    run.add_argument("--pidfile", default=None, metavar="FILE")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    run.add_argument(
        "--no-autopilot",
        dest="autopilot",
        action="store_false",
        help="keep steady Masters and Backups on the event loop instead of the autopilot thread",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from vipkeeper.config.check import run_check
        from vipkeeper.director import describe_data_plane

        return run_check(args.config_file, sys.stderr, describe=describe_data_plane)
    if args.command == "run":
        from vipkeeper.daemon import run_daemon

        return run_daemon(args)
    raise AssertionError(f"unhandled command {args.command!r}")
