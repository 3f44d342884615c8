"""Start-up imports only what the configuration needs: a VRRP-only daemon, built as `vipkeeper
run` builds it, loads no pyroute2 module, no LVS model, health core, checker, Maglev or data
plane, no metrics exporter, no terminal rendering, no reload planning, and no virtual MAC or peer
filter support it does not use; before its instances are in the election neither the director,
the status snapshots, the control socket's server nor ssl or hashlib; a director with virtual
servers loads the LVS half when it starts, after the VRRP instances are in the election. IPVS
support is loaded only when IPVS is the data plane, pyroute2 without its package-wide
`__init__`, and pyroute2 stays whole for anyone who asks it for a name.

Each check runs in a fresh interpreter, since this one may have imported anything already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VRRP_ONLY = """
global_defs {
    router_id r1
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.0.0.50/24
    }
}
"""

WITH_VIRTUAL_SERVER = (
    VRRP_ONLY
    + """
virtual_server 10.0.0.50 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.11 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""
)

# What reads and holds virtual_server blocks: loaded with the first one.
LVS_CONFIG = {
    "vipkeeper.config.lvs_model",
    "vipkeeper.config.blocks.virtual_server",
    "vipkeeper.config.blocks.checkers",
}

# What a daemon without virtual servers never needs before or after it is in the election.
NOT_FOR_VRRP = LVS_CONFIG | {
    "vipkeeper.io.vmac",  # no use_vmac
    "vipkeeper.io.vrrp_filter",  # no vrrp_peer_filter
    "vipkeeper.core.health",
    "vipkeeper.core.health_records",
    "vipkeeper.core.lb",  # the load balancer's records; the configuration reads core.lb_kinds
    "vipkeeper.core.maglev",
    "vipkeeper.drivers.health",
    "vipkeeper.io.checkers",
    "vipkeeper.io.lb_nftables",
    "vipkeeper.io.lb_ipvs",
    "vipkeeper.io.lvs_sync",
    "vipkeeper.reload",
    "vipkeeper.status_view",
    "prometheus_client",
    "rich",
    "glob",  # for includes
    "difflib",  # for "did you mean"
    "shutil",  # for script security
    "ctypes.util",  # no library search: timerfd uses the process's own libc symbols
}

# What a daemon needs only once its instances are in the election (Daemon.after_election): the
# autopilot, the director, the status and metrics snapshots, the control socket's server and the
# configuration's checksum.
AFTER_THE_ELECTION = {
    "vipkeeper.io.autopilot",
    "vipkeeper.director",
    "vipkeeper.snapshots",
    "vipkeeper.metrics",
    "vipkeeper.control",
    "hashlib",
    "random",
    "zlib",
    "pathlib",  # the pidfile and the script runner do without it
}

# The daemon as `vipkeeper run` builds it before its loop starts (no socket is opened yet):
# the daemon's modules imported through the launch's own path, then the daemon built.
BUILD_DAEMON = """
import sys
from vipkeeper.launch import import_daemon
import_daemon()
from vipkeeper.config.load import load_config
from vipkeeper.daemon import Daemon
result = load_config(sys.argv[1])
assert result.config is not None, [d.format() for d in result.diagnostics]
Daemon(result.config, sys.argv[1], control_socket="/run/vipkeeper-test.sock")
"""

# `vipkeeper run` up to the election (its command line, then vipkeeper.launch), for a
# configuration whose interface does not exist here: nothing is removed or opened, and the
# instances are dated all the same.
LAUNCH = """
import sys
from vipkeeper.cli import build_parser
from vipkeeper.launch import enter_election, load_logged
args = build_parser().parse_args(["run", "-f", sys.argv[1]])
result = load_logged(args.config_file)
assert result.config is not None
early = enter_election(result.config)
assert early.entered is not None and early.sockets == [], early
assert 'asyncio' not in sys.modules, 'the launch loaded asyncio before the election'
"""


def imported_after(code: str, *args: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return set(result.stdout.split())


def test_a_vrrp_only_daemon_imports_no_pyroute2_no_lvs_no_metrics_and_no_rendering(
    tmp_path: Path,
) -> None:
    config = tmp_path / "keepalived.conf"
    config.write_text(VRRP_ONLY)
    modules = imported_after(BUILD_DAEMON, str(config))
    assert {"vipkeeper.daemon", "vipkeeper.io.rtnl"} <= modules
    assert not NOT_FOR_VRRP & modules, sorted(NOT_FOR_VRRP & modules)
    assert not {m for m in modules if m.startswith("pyroute2.")}, "rtnetlink is io.rtnl's"
    assert not AFTER_THE_ELECTION & modules, sorted(AFTER_THE_ELECTION & modules)


def test_the_instances_enter_the_election_before_asyncio_and_the_daemon_load(
    tmp_path: Path,
) -> None:
    config = tmp_path / "keepalived.conf"
    config.write_text(VRRP_ONLY.replace("interface eth0", "interface vk-absent0"))
    modules = imported_after(LAUNCH, str(config))
    assert "vipkeeper.io.vrrp_raw" in modules
    loaded_later = {
        "asyncio",
        "vipkeeper.daemon",
        "vipkeeper.core.vrrp",
        "vipkeeper.drivers.vrrp",
        "vipkeeper.core.vrrp_wire",  # the codec: the sockets need only core.vrrp_numbers
        "typing",  # annotations only, under TYPE_CHECKING
        "json",  # for JSON log lines
        "shlex",  # for quoted commands
        "shutil",  # argparse's help width, found by cli._formatter instead
    }
    assert not loaded_later & modules, sorted(loaded_later & modules)


def test_the_daemon_is_imported_without_ssl_which_loads_normally_afterwards() -> None:
    # asyncio without TLS (the daemon opens no TLS transport); ssl itself still importable.
    modules = imported_after(
        "import sys\n"
        "import vipkeeper.cli, vipkeeper.launch\n"
        "assert 'asyncio' not in sys.modules, 'the command line imports asyncio too early'\n"
        "vipkeeper.launch.import_daemon()\n"
        "assert 'ssl' not in sys.modules\n"
        "assert sys.modules['asyncio.base_events'].ssl is None\n"
        "assert 'vipkeeper.daemon' in sys.modules\n"
        "import ssl\n"
        "assert ssl.SSLContext is not None\n"
    )
    assert "ssl" in modules


def test_a_director_with_virtual_servers_loads_health_checks_when_it_starts() -> None:
    # What Director.start() reads first: the services, the monitor and its scheduler.
    modules = imported_after(
        "import sys\n"
        "from vipkeeper.config.load import parse_text\n"
        "from vipkeeper.director import Director\n"
        "from vipkeeper.io.scripts import ScriptRunner\n"
        f"config = parse_text({WITH_VIRTUAL_SERVER!r}).config\n"
        "director = Director(config, runner=ScriptRunner())\n"
        "assert director.active\n"
        f"early = {sorted(NOT_FOR_VRRP - LVS_CONFIG)!r}\n"
        "assert not set(early) & set(sys.modules), sorted(set(early) & set(sys.modules))\n"
        "assert director.service('TCP 10.0.0.50:80') is not None, list(director._services)\n"
        "assert director.monitor is not None and director._scheduler is not None\n"
    )
    wanted = {
        "vipkeeper.core.health",
        "vipkeeper.core.lb",
        "vipkeeper.core.maglev",
        "vipkeeper.drivers.health",
        "vipkeeper.io.checkers",
    }
    assert wanted <= modules, sorted(wanted - modules)


def test_ipvs_support_is_imported_when_ipvs_is_the_data_plane() -> None:
    modules = imported_after(
        "from vipkeeper.director import _ipvs_backend\n"
        "backend = _ipvs_backend()\n"
        "assert backend.name == 'ipvs', backend.name"
    )
    assert {"vipkeeper.io.lb_ipvs", "pyroute2.ipvs"} <= modules
    unwanted = {"pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.conntrack"}
    assert not unwanted & modules, sorted(unwanted & modules)


def test_a_macvlan_loads_pyroute2s_rtnetlink_without_its_whole_package() -> None:
    modules = imported_after(
        "from vipkeeper.io import vmac\nassert vmac.AsyncIPRoute.__name__ == 'AsyncIPRoute'"
    )
    assert "pyroute2.iproute.linux" in modules
    unwanted = {"pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.conntrack", "pyroute2.ipvs"}
    assert not unwanted & modules, sorted(unwanted & modules)


def test_pyroute2_still_offers_every_name_after_the_lean_start() -> None:
    modules = imported_after(
        "import vipkeeper.io.vmac\n"
        "from pyroute2 import IPRoute, NDB, __version__\n"
        "import pyroute2\n"
        "assert pyroute2.AsyncIPRoute is not None\n"
        "try:\n"
        "    pyroute2.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('a missing name must raise AttributeError')"
    )
    assert "pyroute2.ndb.main" in modules
