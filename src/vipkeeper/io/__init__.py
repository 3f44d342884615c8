"""The adapters: the only code of vipkeeper that touches the kernel.

Raw VRRP sockets (`vrrp_socket`), virtual addresses over netlink (`addresses`), gratuitous ARP and
unsolicited neighbour advertisements (`gratuitous`), link and address events (`links`) and the one
subprocess runner (`scripts`). Each module is a thin asyncio adapter; every decision lives in
`vipkeeper.core`.
"""
