"""pyroute2's modules without its package `__init__`, which imports every protocol it speaks.

pyroute2/__init__.py imports NDB, IPDB, conntrack, nl80211, WireGuard, devlink, Plan 9 and more,
to offer them all as `pyroute2.X`; that is most of the daemon's start-up when only rtnetlink
(and, with IPVS as the data plane, generic netlink) is used. `prepare()` registers the package
without running that file: `import pyroute2.iproute.linux` then loads what that module needs and
nothing else. The first lookup on the package of a name that is not a submodule (`from
pyroute2 import IPRoute`, by anyone in the process) runs the real `__init__` at that moment, so
every other user sees the package as usual.

Must never: change what a pyroute2 module does; it only decides when the package's `__init__`
runs. Called once, from `vipkeeper.io`'s own `__init__`, before any adapter imports pyroute2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

PACKAGE = "pyroute2"


def prepare() -> None:
    """Register pyroute2 without running its `__init__` (no-op if it is imported already)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        return  # not installed: the adapter's own import fails with the usual error
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()
    loaded = False

    def load_all() -> ModuleType:
        nonlocal loaded
        with lock:
            if not loaded:
                loaded = True
                del package.__dict__["__getattr__"]
                loader.exec_module(package)
        return package

    def __getattr__(name: str) -> object:  # PEP 562: only for names not in the module yet
        if not name.startswith("__") and importlib.util.find_spec(f"{PACKAGE}.{name}"):
            return importlib.import_module(f"{PACKAGE}.{name}")
        try:
            return load_all().__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    package.__dict__["__getattr__"] = __getattr__
    sys.modules[PACKAGE] = package
