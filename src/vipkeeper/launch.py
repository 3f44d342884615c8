"""`vipkeeper run` up to the election, before asyncio and the daemon's modules are loaded.

Owns the start's first steps, in this order: logging, the configuration (refused with its
diagnostics), the pidfile, removing the VIPs a killed run left on the interfaces, opening the
instances' VRRP sockets (from then on they queue what arrives), and the moment the instances
enter the election, `EarlyStart.entered`. Only then does it load the daemon (`vipkeeper.daemon`:
asyncio, the VRRP core, the adapters), which dates its instances' start `entered`: that loading
runs while their Master_Down_Timer does, so an instance that hears no advert sends its first one
Master_Down_Interval after `entered`, however long the loading took (if longer, as soon as the
loop runs, after the adverts queued meanwhile are read). A restarted router is back in the
election, with no stale VIP, about as soon as keepalived would be (bench/startup.py).

An instance with `use_vmac` sends and listens on a macvlan interface the daemon makes, and
`vrrp_peer_filter` installs its filter before the sockets listen: with either, the sockets open
and the instances start once the daemon is loaded, and only the stale VIPs are removed here.

Must never: import asyncio, or anything that does (tests/unit/test_startup_imports.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vipkeeper import pidfile
from vipkeeper.assemble import Plan, plan
from vipkeeper.config import model
from vipkeeper.config.load import LoadResult, load_config
from vipkeeper.io.addresses import remove_stale_now
from vipkeeper.io.vrrp_raw import open_raw, socket_family
from vipkeeper.logsetup import setup_logging

log = logging.getLogger("vipkeeper")


@dataclass
class EarlyStart:
    """What `enter_election` did before the daemon loaded, for the daemon to carry on from."""

    plan: Plan
    # When the instances entered the election, on the event loop's clock (time.monotonic);
    # None when their sockets could not open before the daemon loaded (use_vmac, peer filter).
    entered: float | None
    # (interface, socket family, socket, interface index) of each socket opened
    sockets: list[tuple[str, int, socket.socket, int]] = field(default_factory=list)

    def close(self) -> None:
        """Close the sockets the daemon did not take over."""
        for _, _, sock, _ in self.sockets:
            sock.close()
        self.sockets.clear()


def load_logged(path: str) -> LoadResult:
    """Read the configuration at `path` and log its diagnostics, errors and warnings."""
    result = load_config(path)
    for diagnostic in result.diagnostics:
        level = logging.ERROR if diagnostic.is_error else logging.WARNING
        log.log(level, "%s", diagnostic.format())
    return result


def enter_election(config: model.Config) -> EarlyStart:
    """Remove stale VIPs, open the instances' sockets and date their entry into the election."""
    the_plan = plan(config)
    vips = [vip for settings in the_plan.settings.values() for vip in settings.virtual_addresses]
    try:
        remove_stale_now(vips)  # each one removed is logged
    except Exception as exc:  # rtnetlink refused or did not answer: start all the same
        log.warning("could not check for stale virtual addresses: %s", exc)
    uses_vmac = any(instance.use_vmac is not None for instance in config.vrrp_instances)
    early = EarlyStart(the_plan, entered=None)
    if uses_vmac or config.global_defs.vrrp_peer_filter:
        return early
    wanted = {(s.interface, int(socket_family(s.family))) for s in the_plan.settings.values()}
    for interface, family in sorted(wanted):
        try:
            sock, index = open_raw(interface, family)
        except OSError:
            continue  # the daemon tries again, and says why, when it opens the rest
        early.sockets.append((interface, family, sock, index))
    early.entered = time.monotonic()
    if the_plan.settings:
        listening = ", ".join(sorted({interface for interface, _, _, _ in early.sockets}))
        log.info("in the election: %d VRRP instance(s), listening on %s",
                 len(the_plan.settings), listening or "no interface yet")  # fmt: skip
    return early


def import_asyncio_without_ssl() -> None:
    """Import asyncio without the ssl module, for the daemon (bench/startup.py measures it).

    asyncio loads ssl (OpenSSL's bindings, about a tenth of asyncio's import) for TLS
    transports, which the daemon never opens: asyncio is imported while ssl reads as absent, so
    it offers no TLS, and ssl imports normally afterwards for anything that asks for it.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl: ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


RunDaemon = Callable[[argparse.Namespace, model.Config, EarlyStart | None], int]


def import_daemon() -> RunDaemon:
    """`vipkeeper.daemon.run_daemon`, imported as cheaply as start-up allows (bench/startup.py).

    asyncio comes without ssl (import_asyncio_without_ssl). The daemon's modules create
    hundreds of classes and no garbage worth collecting: without the collector's passes over
    them the import takes about a tenth less time (the command line turns it off already, for
    the launch's own imports). What they made is then frozen, so later passes skip it too, and
    the collector runs again.
    """
    gc.disable()
    try:
        import_asyncio_without_ssl()
        from vipkeeper.daemon import run_daemon
    finally:
        gc.freeze()
        gc.enable()
    return run_daemon


def run(args: argparse.Namespace) -> int:
    """`vipkeeper run`: the steps above, then the daemon until it stops."""
    setup_logging(args.log_format, args.log_level)
    result = load_logged(args.config_file)
    if result.config is None:
        log.error("%s: configuration refused, not starting", args.config_file)
        return 1
    if args.pidfile:
        try:
            pidfile.acquire(args.pidfile)
        except pidfile.AlreadyRunning as exc:
            log.error("%s", exc)
            return 1
    early: EarlyStart | None = None
    try:
        early = enter_election(result.config)
        return import_daemon()(args, result.config, early)
    finally:
        if early is not None:
            early.close()
        if args.pidfile:
            with contextlib.suppress(OSError):
                pidfile.release(args.pidfile)
