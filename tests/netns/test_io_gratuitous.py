"""vipkeeper.io.gratuitous between two namespaces: the peer captures the announcements exactly
as RFC 5227 / RFC 4861 describe them, and its neighbour table moves the VIP to the sender's MAC
(which the kernel only does for well-formed frames: hop limit 255 and a valid ICMPv6 checksum)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.utils import rdpcap

from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import polled

pytestmark = pytest.mark.netns

FAKE_MAC = "02:00:00:00:00:99"

SENDER = """
import asyncio, json, sys
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.io.gratuitous import GratuitousSender, send_gratuitous

vips = [VirtualAddress(**v) for v in json.loads(sys.argv[1])]
if sys.argv[3:] == ["class"]:
    print(asyncio.run(GratuitousSender(interval=0.01).announce(tuple(vips), int(sys.argv[2]))))
elif sys.argv[3:] == ["now"]:
    sender = GratuitousSender()
    print(sender.announce_now(tuple(vips), int(sys.argv[2])))
    sender.close()
else:
    print(asyncio.run(send_gratuitous(vips, int(sys.argv[2]), interval=0.01)))
"""

poll = polled(10, interval=0.1)


def start_capture(lab: Lab, host: Host, pcap: Path) -> None:
    errors = pcap.with_suffix(".err")
    with errors.open("wb") as stderr:
        lab.popen(host, "tcpdump", "-U", "-n", "-i", host.ifname, "-w", str(pcap),
                  "arp or icmp6", stderr=stderr)  # fmt: skip

    @poll
    def listening() -> None:
        assert "listening on" in errors.read_text()

    listening()


def captured(pcap: Path) -> list[Packet]:
    try:
        return list(rdpcap(str(pcap)))
    except Exception:  # still being written: the header or a record is incomplete
        return []


def neighbour_mac(lab: Lab, host: Host, address: str) -> str | None:
    entries = json.loads(lab.run(host, "ip", "-j", "neigh", "show", "to", address).stdout)
    return entries[0].get("lladdr") if entries else None


def announce(
    lab: Lab,
    host: Host,
    address: str,
    prefixlen: int,
    count: int,
    via_class: bool = False,
    at_once: bool = False,
) -> None:
    vip = {"address": address, "prefixlen": prefixlen, "dev": host.ifname}
    flag = ["nodad"] if ":" in address else []
    lab.run(host, "ip", "addr", "add", f"{address}/{prefixlen}", "dev", host.ifname, *flag)
    extra = ["now"] if at_once else ["class"] if via_class else []
    result = lab.python(host, SENDER, json.dumps([vip]), str(count), *extra)
    expected = "True" if at_once else "None" if via_class else str(count)
    assert result.stdout.strip() == expected


def watch_peer(lab: Lab, peer: Host, address: str, pcap: Path) -> None:
    """The peer holds a stale entry for `address` at FAKE_MAC and captures what arrives."""
    family = ["-6"] if ":" in address else []
    lab.run(peer, "ip", *family, "neigh", "replace", address, "lladdr", FAKE_MAC,
            "dev", peer.ifname, "nud", "stale")  # fmt: skip
    start_capture(lab, peer, pcap)


def entry_moves(lab: Lab, sender: Host, peer: Host, address: str) -> None:
    """Wait until the peer's entry for `address` holds the sender's MAC."""

    @poll
    def updated() -> None:
        assert neighbour_mac(lab, peer, address) == lab.mac(sender)

    updated()


def announce_watched(
    lab: Lab,
    pair: tuple[Host, Host],
    pcap: Path,
    address: str,
    prefixlen: int,
    count: int,
    **how: bool,
) -> None:
    """The second host of the pair watches (`watch_peer`) while the first announces `address`."""
    sender, peer = pair
    watch_peer(lab, peer, address, pcap)
    announce(lab, sender, address, prefixlen, count, **how)


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    """Where the peer's capture goes."""
    return tmp_path / "b.pcap"


@pytest.fixture
def pair(lab: Lab) -> tuple[Host, Host]:
    return lab.add_host("a", ["10.0.0.1/24", "fd00::1/64"]), lab.add_host(
        "b", ["10.0.0.2/24", "fd00::2/64"]
    )


def test_gratuitous_arp_moves_the_peers_neighbour_entry_to_the_sender(
    lab: Lab, pair: tuple[Host, Host], pcap: Path
) -> None:
    a, b = pair
    announce_watched(lab, pair, pcap, "10.0.0.100", 24, count=3)

    entry_moves(lab, a, b, "10.0.0.100")

    @poll
    def three_announcements() -> None:
        arps = [frame for frame in captured(pcap) if ARP in frame]
        assert len(arps) == 3
        for frame in arps:
            assert frame[Ether].dst == "ff:ff:ff:ff:ff:ff"
            assert frame[Ether].src == lab.mac(a)
            assert frame[ARP].op == 1  # request
            assert frame[ARP].hwsrc == lab.mac(a)
            assert frame[ARP].psrc == frame[ARP].pdst == "10.0.0.100"

    three_announcements()


def test_announcing_at_once_sends_every_round_without_the_loop(
    lab: Lab, pair: tuple[Host, Host], pcap: Path
) -> None:
    a, b = pair
    announce_watched(lab, pair, pcap, "10.0.0.101", 24, count=2, at_once=True)

    @poll
    def two_announcements_and_the_entry_moved() -> None:
        arps = [frame for frame in captured(pcap) if ARP in frame]
        assert len(arps) == 2
        assert all(frame[ARP].psrc == frame[ARP].pdst == "10.0.0.101" for frame in arps)
        assert all(frame[Ether].src == lab.mac(a) for frame in arps)
        assert neighbour_mac(lab, b, "10.0.0.101") == lab.mac(a)

    two_announcements_and_the_entry_moved()


def test_unsolicited_neighbour_advertisement_overrides_the_peers_entry(
    lab: Lab, pair: tuple[Host, Host], pcap: Path
) -> None:
    a, b = pair
    announce_watched(lab, pair, pcap, "fd00::100", 64, count=2, via_class=True)

    entry_moves(lab, a, b, "fd00::100")

    @poll
    def two_advertisements() -> None:
        adverts = [frame for frame in captured(pcap) if ICMPv6ND_NA in frame]
        assert len(adverts) == 2
        for frame in adverts:
            na = frame[ICMPv6ND_NA]
            assert frame[Ether].dst == "33:33:00:00:00:01"
            assert frame[IPv6].dst == "ff02::1"
            assert frame[IPv6].hlim == 255
            assert (na.R, na.S, na.O) == (0, 0, 1)
            assert na.tgt == "fd00::100"
            assert na[ICMPv6NDOptDstLLAddr].lladdr == lab.mac(a)
            rebuilt = IPv6(bytes(frame[IPv6]))
            del rebuilt[ICMPv6ND_NA].cksum
            assert IPv6(bytes(rebuilt))[ICMPv6ND_NA].cksum == na.cksum

    two_advertisements()


def test_missing_interface_is_skipped_without_raising(lab: Lab, pair: tuple[Host, Host]) -> None:
    a, _ = pair
    vips = [{"address": "10.0.0.100", "prefixlen": 32, "dev": "nothere0"}]
    result = lab.python(a, SENDER, json.dumps(vips), "2")
    assert result.stdout.strip() == "0"
