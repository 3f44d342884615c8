"""An instance's address family on the wire is the one the configuration model decides.

`native_ipv6` forces IPv6 (and so VRRPv3 to ff02::12); an IPv6 or VRRPv3 instance without a
virtual address is refused at load, as keepalived 2.2.7 refuses it, so it never speaks at all.
The adverts are captured on the LAN with tcpdump and decoded with scapy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet
from scapy.utils import rdpcap

from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL
from vipkeeper.testing.daemons import (
    Subnet,
    describe,
    instance_config,
    start_vipkeeper,
    vipkeeper_argv,
    wait_for_holders,
)
from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns


def start_capture(lab: Lab, host: Host, pcap: Path) -> subprocess.Popen[bytes]:
    errors = pcap.with_suffix(".err")
    with errors.open("wb") as stderr:
        process = lab.popen(host, "tcpdump", "-U", "-n", "-i", host.ifname, "-w", str(pcap),
                            f"ip proto {VRRP_PROTOCOL} or ip6 proto {VRRP_PROTOCOL}",
                            stderr=stderr)  # fmt: skip
    poll(10, lambda: _assert_listening(errors))
    return process


def _assert_listening(errors: Path) -> None:
    assert "listening on" in errors.read_text()


def vrrp_packets(pcap: Path) -> list[Packet]:
    try:
        return list(rdpcap(str(pcap)))
    except Exception:  # still being written: the header or a record is incomplete
        return []


def test_native_ipv6_instance_advertises_vrrpv3_over_ipv6_only(lab: Lab, tmp_path: Path) -> None:
    net = Subnet.next()
    router = lab.add_host("r1", [net.v4_cidr(1), net.v6_cidr(1)])
    listener = lab.add_host("client", [net.v4_cidr(200), net.v6_cidr(200)])
    pcap = tmp_path / "adverts.pcap"
    start_capture(lab, listener, pcap)
    config = instance_config(
        priority=200, vips=[net.vip6_cidr], version=3, advert_int=0.2, extra=["native_ipv6"]
    )
    daemon = start_vipkeeper(lab, router, config)
    wait_for_holders(lab, [router], net.vip6_cidr, ["r1"], within=15, daemons=[daemon])

    def three_adverts() -> list[Packet]:
        packets = vrrp_packets(pcap)
        assert len(packets) >= 3, describe([daemon])
        return packets

    packets = poll(10, three_adverts)
    assert all(IPv6 in p and p[IPv6].dst == "ff02::12" for p in packets), packets
    assert not any(IP in p for p in packets), packets
    assert all(bytes(p[IPv6].payload)[0] >> 4 == 3 for p in packets), "not VRRPv3"


def test_native_ipv6_instance_without_virtual_address_is_refused_and_sends_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    net = Subnet.next()
    router = lab.add_host("r1", [net.v4_cidr(1), net.v6_cidr(1)])
    listener = lab.add_host("client", [net.v4_cidr(200), net.v6_cidr(200)])
    pcap = tmp_path / "adverts.pcap"
    start_capture(lab, listener, pcap)
    config_path = tmp_path / "no-vip.conf"
    config_path.write_text(
        "vrrp_instance VI_6 {\n"
        "    interface eth0\n"
        "    virtual_router_id 61\n"
        "    priority 200\n"
        "    advert_int 0.2\n"
        "    native_ipv6\n"
        "}\n"
    )
    result = lab.run(router, *vipkeeper_argv(), "run", "-f", str(config_path), check=False,
                     timeout=60)  # fmt: skip
    assert result.returncode == 1, result
    assert f"{config_path}:1:" in result.stderr, result.stderr
    assert "needs at least one" in result.stderr, result.stderr
    # A daemon that had started would have sent its first advert within advert_int; the run
    # above has already exited, so anything on the wire now came from it.
    assert vrrp_packets(pcap) == []
