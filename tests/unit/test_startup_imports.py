"""Start-up imports only what the configuration needs: no pyroute2 package-wide `__init__`
(NDB, IPDB, conntrack, ...), no IPVS support unless IPVS is the data plane; and pyroute2 stays
whole for anyone who asks it for a name.

Each check runs in a fresh interpreter, since this one may have imported anything already.
"""

from __future__ import annotations

import subprocess
import sys


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(result.stdout.split())


def test_the_daemon_imports_neither_pyroute2s_whole_package_nor_ipvs_support() -> None:
    modules = imported_after("import vipkeeper.daemon")
    assert "pyroute2.iproute.linux" in modules  # what the VRRP adapters use
    unwanted = {
        "pyroute2.ndb.main",
        "pyroute2.ipdb",
        "pyroute2.conntrack",
        "pyroute2.netlink.nl80211",
        "pyroute2.ipvs",
        "pyroute2.netlink.generic.ipvs",
        "vipkeeper.io.lb_ipvs",
    }
    assert not unwanted & modules, sorted(unwanted & modules)


def test_ipvs_support_is_imported_when_ipvs_is_the_data_plane() -> None:
    modules = imported_after(
        "from vipkeeper.director import _ipvs_backend\n"
        "backend = _ipvs_backend()\n"
        "assert backend.name == 'ipvs', backend.name"
    )
    assert {"vipkeeper.io.lb_ipvs", "pyroute2.ipvs"} <= modules


def test_pyroute2_still_offers_every_name_after_the_lean_start() -> None:
    modules = imported_after(
        "import vipkeeper.io.addresses\n"
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
