"""Seed inputs for the fuzz targets: real packets, real configurations, real responses.

    vrrp    VRRPv2 / v3 adverts built by scapy (IPv4 and IPv6), with each target control byte
    config  keepalived's sample configurations (VIPKEEPER_SAMPLES_DIR, else ../shared/
            keepalived-samples beside the repository, read in place) and the lab's own
    http    responses recorded from Python's http.server on loopback (a page, a 404, a
            directory listing, HTTP/1.0 and 1.1)

`seeds(name)` returns the list; `write(name, directory)` puts them in a libFuzzer corpus.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def samples_dir() -> Path:
    override = os.environ.get("VIPKEEPER_SAMPLES_DIR")
    return Path(override) if override else REPO / ".." / "shared" / "keepalived-samples"


def vrrp_seeds() -> list[bytes]:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.vrrp import VRRP, VRRPv3

    packets = [
        bytes(
            IP(src="10.0.0.1", dst="224.0.0.18")
            / VRRP(vrid=51, priority=150, addrlist=["10.0.0.100"])
        )[20:],
        bytes(
            IP(src="10.0.0.1", dst="224.0.0.18")
            / VRRP(
                vrid=1,
                priority=255,
                authtype=1,
                auth1=0x70617373,
                addrlist=["10.0.0.100", "10.0.0.101"],
            )
        )[20:],
        bytes(
            IP(src="10.0.0.1", dst="224.0.0.18")
            / VRRPv3(vrid=51, priority=100, adv=100, addrlist=["10.0.0.100"])
        )[20:],
    ]
    v6 = bytes(IPv6(src="fe80::1", dst="ff02::12") / VRRPv3(vrid=7, priority=200, adv=10,
               ipcount=1, addrlist=["fd00::100"]))[40:]  # fmt: skip
    seeds = [bytes([control]) + packet for packet in packets for control in (0, 2)]
    seeds += [bytes([control]) + v6 for control in (1, 3)]
    return seeds


def config_seeds() -> list[bytes]:
    found = sorted(samples_dir().glob("keepalived.conf*")) + sorted(
        (REPO / "lab").glob("*/keepalived.conf")
    )
    return [path.read_bytes() for path in found]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def http_seeds() -> list[bytes]:
    """Raw responses of a real server, each with the two control bytes in front."""
    root = REPO / "docs"
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    responses = []
    try:
        for request in (b"GET /architecture.md HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        b"GET /missing HTTP/1.0\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n",
                        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):  # fmt: skip
            with socket.create_connection(server.server_address[:2], timeout=5) as conn:
                conn.sendall(request)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            responses.append(data[:20000])
    finally:
        server.shutdown()
        server.server_close()
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n0\r\n\r\n"
    responses.append(chunked)
    return [bytes([flags, split]) + r for r in responses for flags, split in ((1, 255), (0, 7))]


SEEDS = {"vrrp": vrrp_seeds, "config": config_seeds, "http": http_seeds}


def seeds(name: str) -> list[bytes]:
    return SEEDS[name]()


def write(name: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for seed in seeds(name):
        path = directory / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}"
        with contextlib.suppress(FileExistsError):
            path.write_bytes(seed)
        count += 1
    return count
