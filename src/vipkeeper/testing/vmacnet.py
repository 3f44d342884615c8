"""`use_vmac` between vipkeeper and real keepalived: one virtual router, one virtual MAC.

A vipkeeper (priority 150) and a keepalived (priority 100) on one bridge both run VRID 51 with
`use_vmac` (and, with `xmit_base`, `vmac_xmit_base`); a client pings the VIP. `run_scenario`
proves, in order:
- vipkeeper becomes Master and holds the VIP on the macvlan `vrrp.51`, whose MAC is the RFC
  virtual MAC 00:00:5e:00:01:33, and the client's ARP entry for the VIP names that MAC;
- its adverts leave as keepalived's do: from the virtual MAC (or, with vmac_xmit_base, from the
  interface's own MAC) with the interface's own address as IP source;
- vipkeeper sets arp_ignore=1, arp_filter=1 (as keepalived does) and arp_announce=2 (set by
  hand for keepalived here) on the interface below;
- vipkeeper stops: keepalived takes over, vipkeeper's macvlan is gone and its interface's
  ARP settings are back to what they were; keepalived's adverts have the same
  shape, and the client reaches the VIP at the same MAC without its ARP entry being flushed.

Shared by tests/netns/test_vmac.py (the host's kernel, when it has macvlan) and
tests/kernel/test_vmac.py (Debian's kernel in the VM, with generous bounds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vipkeeper.testing.daemons import (
    Daemon,
    Subnet,
    describe,
    global_defs,
    instance_config,
    ping_once,
    start_vipkeeper,
)
from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import poll

VRID = 51
VMAC_DEVICE = f"vrrp.{VRID}"
VIRTUAL_MAC = f"00:00:5e:00:01:{VRID:02x}"  # RFC 3768 §7.3, written out: not the code's helper


@dataclass(frozen=True)
class Advert:
    source_mac: str
    source_ip: str
    priority: int


def capture_advert(lab: Lab, client: Host, *, timeout: float) -> Advert:
    """The next VRRP advert the client sees on its link (tcpdump -e: with the Ethernet header)."""
    out = lab.run(
        client, "timeout", f"{timeout:g}", "tcpdump", "-i", client.ifname, "-e", "-n", "-l",
        "-c", "1", "ip proto 112", timeout=timeout + 10,
    ).stdout  # fmt: skip
    # 12:00:00.000 00:00:5e:00:01:33 > 01:00:5e:00:00:12, ethertype IPv4 (0x0800), length 60:
    #   10.5.0.1 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 150, ...
    words = out.replace(",", " ").split()
    source_ip = words[words.index("224.0.0.18:") - 2]
    return Advert(
        source_mac=words[1],
        source_ip=source_ip,
        priority=int(words[words.index("prio") + 1]),
    )


def link_mac(lab: Lab, host: Host, device: str) -> str | None:
    result = lab.run(host, "ip", "-j", "link", "show", "dev", device, check=False)
    if result.returncode != 0:
        return None
    return str(json.loads(result.stdout)[0]["address"])


def neighbour_mac(lab: Lab, client: Host, address: str) -> str | None:
    entries = json.loads(lab.run(client, "ip", "-j", "neigh", "show", address).stdout)
    return next((str(e["lladdr"]) for e in entries if "lladdr" in e), None)


ARP_SETTINGS = ("arp_ignore", "arp_filter", "arp_announce")


def arp_settings(lab: Lab, host: Host) -> tuple[str, ...]:
    conf = f"/proc/sys/net/ipv4/conf/{host.ifname}"
    return tuple(lab.run(host, "cat", f"{conf}/{key}").stdout.strip() for key in ARP_SETTINGS)


def run_scenario(lab: Lab, *, xmit_base: bool, within: float) -> None:
    net = Subnet.next()
    vk = lab.add_host("vk", [net.v4_cidr(1)])
    ka = lab.add_host("ka", [net.v4_cidr(2)])
    client = lab.add_host("client", [net.v4_cidr(200)])
    extra = ["use_vmac", *(["vmac_xmit_base"] if xmit_base else [])]
    arp_before = arp_settings(lab, vk)

    def config(priority: int) -> str:
        return instance_config(priority=priority, vips=[net.vip4_cidr], vrid=VRID, extra=extra)

    # What vipkeeper sets itself and keepalived does not: ARP requests from the interface below
    # never name a VIP (else the client's entry for it would name that interface's MAC).
    lab.run(ka, "sysctl", "-q", f"net.ipv4.conf.{ka.ifname}.arp_announce=2")
    keepalived = lab.start_keepalived(ka, global_defs("ka") + config(100))
    vipkeeper = start_vipkeeper(lab, vk, config(150))
    daemons: list[Daemon] = [vipkeeper, keepalived]

    def holds(host: Host) -> None:
        for other in (vk, ka):
            held = (
                net.vip4_cidr in lab.addresses(other, dev=VMAC_DEVICE)
                if link_mac(lab, other, VMAC_DEVICE)
                else False
            )
            assert held == (other is host), f"{other.name} holds the VIP: {held}\n" + describe(
                daemons
            )

    poll(within, lambda: holds(vk))
    assert link_mac(lab, vk, VMAC_DEVICE) == VIRTUAL_MAC
    assert net.vip4_cidr not in lab.addresses(vk)  # not on the interface below
    assert arp_settings(lab, vk) == ("1", "1", "2")
    poll(within, lambda: _reachable(lab, client, net.vip4))
    assert neighbour_mac(lab, client, net.vip4) == VIRTUAL_MAC, (
        lab.run(client, "ip", "neigh").stdout,
        lab.run(vk, "ip", "-d", "link").stdout,
    )

    sent_mac = lab.mac(vk) if xmit_base else VIRTUAL_MAC
    advert = poll(within, lambda: _advert_from(lab, client, 150, within))
    assert advert == Advert(source_mac=sent_mac, source_ip=net.v4(1), priority=150)

    assert vipkeeper.stop(timeout=within) == 0
    poll(within, lambda: holds(ka))
    assert link_mac(lab, vk, VMAC_DEVICE) is None  # the macvlan went with the daemon
    assert arp_settings(lab, vk) == arp_before
    advert = poll(within, lambda: _advert_from(lab, client, 100, within))
    assert advert == Advert(
        source_mac=lab.mac(ka) if xmit_base else VIRTUAL_MAC, source_ip=net.v4(2), priority=100
    )
    # no ARP flush: the client's entry still names the virtual MAC, now answered by keepalived
    poll(within, lambda: _reachable(lab, client, net.vip4))
    assert neighbour_mac(lab, client, net.vip4) == VIRTUAL_MAC


def _reachable(lab: Lab, client: Host, address: str) -> None:
    assert ping_once(lab, client, address), f"no answer from {address}"


def _advert_from(lab: Lab, client: Host, priority: int, within: float) -> Advert:
    advert = capture_advert(lab, client, timeout=min(within, 30))
    assert advert.priority == priority, advert  # the old Master's last adverts may still be seen
    return advert
