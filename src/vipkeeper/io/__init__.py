"""The adapters: the only code of vipkeeper that touches the kernel.

Raw VRRP sockets (`vrrp_socket`), virtual addresses over netlink (`addresses`), gratuitous ARP and
unsolicited neighbour advertisements (`gratuitous`), link and address events (`links`) and the one
subprocess runner (`scripts`). Each module is a thin asyncio adapter; every decision lives in
`vipkeeper.core`.

Importing this package registers pyroute2 lean (see `pyroute2_lean`): the adapters load the
pyroute2 modules they use, not the package-wide `__init__` that imports every protocol.
"""

from vipkeeper.io import pyroute2_lean

pyroute2_lean.prepare()
