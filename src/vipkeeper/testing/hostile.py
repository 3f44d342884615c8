"""Hostile neighbours on a lab LAN: floods of VRRP adverts and malformed ARP from a non-peer.

What this owns: the packets (built with vipkeeper's own encoder, so they are valid VRRP unless a
case wants them otherwise), the flooder program that sends them from a lab host as fast as it
can for a given time, and the cases. Both the netns test (tests/netns/test_hostile_neighbours.py,
vipkeeper only: no state change) and the bench (bench/hostile.py: the Master's CPU against
keepalived's in the same run) use them. The filtered case is vipkeeper's alone: `vrrp_peer_filter`
(an nftables table the daemon installs) is not a keepalived keyword.

The LAN: the Master r1 (10.N.0.1, priority 200, one instance, VRID 51, VIP .100), the peer r2
(10.N.0.2; no daemon runs there, it only gives the unicast case a peer address) and the attacker
(10.N.0.66). Nothing leaves the lab's namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from vipkeeper.core import vrrp_numbers, vrrp_wire
from vipkeeper.testing.netns import Host, Lab

MASTER_PRIORITY = 200
VRID = 51
ATTACKER = 66
PEER = 2
ADVERT_INT = 1  # seconds; the v2 cases need whole seconds
PASSWORD = "s3cret"

# Sends one of the given frames or VRRP payloads, round robin, as fast as it can for SECONDS;
# prints how many it sent. vrrp: an IP raw socket (the kernel writes the IP header, TTL 255 as
# RFC 9568 §7.1 requires); arp: a packet socket on the interface, whole Ethernet frames.
FLOODER = r"""
import socket, sys, time
kind, ifname, source, destination, seconds = sys.argv[1:6]
packets = [bytes.fromhex(h) for h in sys.argv[6:]]
if kind == "vrrp":
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
    send = lambda packet: sock.sendto(packet, (destination, 0))
else:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    send = sock.send
sent = 0
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    for _ in range(200):
        for packet in packets:
            try:
                send(packet)
                sent += 1
            except OSError:  # a full queue: the flood goes on
                pass
print(sent, flush=True)
"""


@dataclass(frozen=True)
class Case:
    """One hostile neighbour: the Master's configuration and what the attacker sends."""

    name: str
    what: str  # one line for the tables
    version: int
    auth: bool  # v2 PASS authentication with PASSWORD
    unicast: bool  # unicast_peer r2 (and keepalived's check_unicast_src)
    kind: str  # "vrrp" or "arp"
    priority: int = 254  # of the flood's adverts
    password: str | None = None  # the flood's v2 PASS data
    state_change_expected: bool = False
    peer_filter: bool = False  # global_defs vrrp_peer_filter (vipkeeper only)


CASES = (
    Case("non-peer", "10k+/s priority-254 adverts from a non-peer, unicast_peer configured",
         version=3, auth=False, unicast=True, kind="vrrp"),
    Case("non-peer-filtered", "the non-peer flood with vrrp_peer_filter: dropped in the kernel",
         version=3, auth=False, unicast=True, kind="vrrp", peer_filter=True),
    Case("wrong-password", "10k+/s priority-254 v2 adverts with a wrong PASS password",
         version=2, auth=True, unicast=False, kind="vrrp", password="guess"),
    Case("lower-priority", "10k+/s priority-100 adverts from a non-peer, multicast",
         version=3, auth=False, unicast=False, kind="vrrp", priority=100),
    Case("malformed-arp", "10k+/s malformed ARP frames for the VIP",
         version=3, auth=False, unicast=False, kind="arp"),
    Case("sniffed-password", "priority-254 v2 adverts with the password read off the wire",
         version=2, auth=True, unicast=False, kind="vrrp", password=PASSWORD,
         state_change_expected=True),
)  # fmt: skip
CASE_NAMES = {case.name: case for case in CASES}


def master_config(case: Case, subnet: int) -> str:
    """The Master's keepalived.conf: read alike by vipkeeper and keepalived."""
    lines = [
        "global_defs {\n    router_id r1\n"
        + ("    vrrp_peer_filter\n" if case.peer_filter else "")
        + "}\n",
        "vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n",
        f"    version {case.version}\n    virtual_router_id {VRID}\n",
        f"    priority {MASTER_PRIORITY}\n    advert_int {ADVERT_INT}\n",
    ]
    if case.auth:
        lines.append(
            f"    authentication {{\n        auth_type PASS\n        auth_pass {PASSWORD}\n    }}\n"
        )
    if case.unicast:
        lines.append(f"    unicast_src_ip 10.{subnet}.0.1\n    check_unicast_src\n")
        lines.append(f"    unicast_peer {{\n        10.{subnet}.0.{PEER}\n    }}\n")
    lines.append(f"    virtual_ipaddress {{\n        {vip(subnet)}/24\n    }}\n}}\n")
    return "".join(lines)


def vip(subnet: int) -> str:
    return f"10.{subnet}.0.100"


def flood_packets(case: Case, subnet: int, attacker_mac: bytes) -> tuple[str, list[bytes]]:
    """(destination, packets) of the case's flood."""
    source = f"10.{subnet}.0.{ATTACKER}"
    if case.kind == "arp":
        return "", malformed_arp(attacker_mac, vip(subnet))
    destination = f"10.{subnet}.0.1" if case.unicast else vrrp_numbers.MULTICAST_V4
    advert = vrrp_wire.Advertisement(
        version=case.version,
        vrid=VRID,
        priority=case.priority,
        addresses=(vip(subnet),),
        wire_interval=ADVERT_INT if case.version == 2 else ADVERT_INT * 100,
        auth_type=vrrp_wire.AuthType.PASS if case.password else vrrp_wire.AuthType.NONE,
        auth_data=vrrp_wire.pack_password(case.password) if case.password else b"",
    )
    return destination, [vrrp_wire.encode(advert, source=source, destination=destination)]


def malformed_arp(mac: bytes, target: str) -> list[bytes]:
    """Broadcast ARP frames about `target` that no correct stack accepts: truncated, wrong
    hardware and protocol lengths, an unknown operation, a multicast sender."""
    broadcast = b"\xff" * 6
    header = broadcast + mac + b"\x08\x06"
    ip = bytes(int(part) for part in target.split("."))
    multicast = b"\x01\x00\x5e\x00\x00\x01"
    good = b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + ip + b"\x00" * 6 + ip
    return [
        header + good[:12],  # truncated in the sender's address
        header + b"\x00\x01\x08\x00\x10\x04\x00\x01" + mac + ip + b"\x00" * 6 + ip,  # hlen 16
        header + b"\x00\x01\x08\x00\x06\x09\x00\x01" + mac + ip + b"\x00" * 6 + ip,  # plen 9
        header + b"\x00\x01\x08\x00\x06\x04\x00\x63" + mac + ip + b"\x00" * 6 + ip,  # op 99
        header + b"\x00\x01\x08\x00\x06\x04\x00\x02" + multicast + ip + broadcast + ip,
    ]  # fmt: skip


def start_flood(
    lab: Lab, attacker: Host, case: Case, subnet: int, seconds: float
) -> subprocess.Popen[bytes]:
    """The flooder, started in the attacker's namespace; its stdout gives the count sent."""
    destination, packets = flood_packets(
        case, subnet, bytes.fromhex(lab.mac(attacker).replace(":", ""))
    )
    return lab.popen(
        attacker, sys.executable, "-c", FLOODER, case.kind, attacker.ifname,
        f"10.{subnet}.0.{ATTACKER}", destination, f"{seconds:g}", *(p.hex() for p in packets),
        stdout=subprocess.PIPE,
    )  # fmt: skip


def flood_count(flood: subprocess.Popen[bytes], timeout: float) -> int:
    out, _ = flood.communicate(timeout=timeout)
    return int(out.decode().strip() or 0)
