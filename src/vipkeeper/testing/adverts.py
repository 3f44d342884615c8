"""Listen for VRRP advertisements in a namespace: `python -m vipkeeper.testing.adverts ADDRESS`.

Joins the IPv4 VRRP group on the interface holding ADDRESS, prints `ready`, then one line per
advertisement heard: its kernel receive time (SO_TIMESTAMPNS, epoch seconds), source and
priority. `--count N` stops after N; `--timeout S` gives up after S seconds without one (exit
status 1). The soak records with it what explains a violation; the start-up bench times a
daemon's first advert with it. Must never: send anything.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

from vipkeeper.core.vrrp_numbers import MULTICAST_V4, VRRP_PROTOCOL

SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="this host's address on the VRRP segment")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTOCOL)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    membership = socket.inet_aton(MULTICAST_V4) + socket.inet_aton(args.address)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.settimeout(args.timeout)
    print("ready", flush=True)
    heard = 0
    while not args.count or heard < args.count:
        try:
            data, ancillary, _flags, (source, _port) = sock.recvmsg(2048, 256)
        except TimeoutError:
            return 1
        stamp = 0.0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                stamp = seconds + nanoseconds / 1e9
        header = (data[0] & 0x0F) * 4
        priority = data[header + 2] if len(data) > header + 2 else -1
        print(f"{stamp:.6f} {source} {priority}", flush=True)
        heard += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
