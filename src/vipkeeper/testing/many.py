"""255 VRRP instances on one interface, running: the configuration and a listener that counts
the adverts of every VRID on the wire. Used by tests/netns/test_many_instances.py (vipkeeper)
and bench/many_instances.py (keepalived and vipkeeper side by side).

One router, alone on the LAN with the listener: every instance (VRID 1 to 255, one VIP each,
10.N.1.1 to 10.N.1.255 on a /16, v3, advert_int 1) becomes Master and advertises once a second.
"""

from __future__ import annotations

INSTANCES = 255  # every VRID there is (RFC 9568 §5.2.3: 1-255)
ADVERT_INT = 1

# Counts VRRP adverts per VRID for argv[2] seconds; prints "vrid count" lines, then "done".
LISTENER = r"""
import socket, sys, time, collections
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                socket.inet_aton("224.0.0.18") + socket.inet_aton(sys.argv[1]))
sock.settimeout(0.5)
print("ready", flush=True)
counts = collections.Counter()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        data = sock.recv(2048)
    except TimeoutError:
        continue
    header = (data[0] & 0x0F) * 4
    if len(data) > header + 1:
        counts[data[header + 1]] += 1
for vrid, count in sorted(counts.items()):
    print(vrid, count)
print("done", flush=True)
"""


def vip(subnet: int, vrid: int) -> str:
    return f"10.{subnet}.1.{vrid}/16"


def config(subnet: int) -> str:
    """One router's keepalived.conf with INSTANCES instances on eth0 (vipkeeper and keepalived
    read the same text)."""
    blocks = ["global_defs {\n    router_id many\n}\n"]
    for vrid in range(1, INSTANCES + 1):
        blocks.append(
            f"vrrp_instance VI_{vrid} {{\n    state BACKUP\n    interface eth0\n    version 3\n"
            f"    virtual_router_id {vrid}\n    priority 100\n    advert_int {ADVERT_INT}\n"
            f"    virtual_ipaddress {{\n        {vip(subnet, vrid)}\n    }}\n}}\n"
        )
    return "".join(blocks)


def parse_counts(output: str) -> dict[int, int]:
    """The listener's output: adverts seen per VRID."""
    lines = output.split()
    if not lines or lines[-1] != "done":
        raise ValueError(f"the listener did not finish: {output!r}")
    numbers = [int(word) for word in lines[:-1] if word != "ready"]
    return dict(zip(numbers[0::2], numbers[1::2], strict=True))
