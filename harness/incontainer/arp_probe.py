"""ARP probe, run inside the client: who answers "who-has VIP"?

Usage: python3 arp_probe.py VIP IFACE TIMEOUT
Broadcasts one ARP request from IFACE and prints, as a JSON list, the sorted set of MAC
addresses that answered for VIP within TIMEOUT seconds (every answer counts, not the first).
The kernel's neighbour table is neither read nor changed.
"""

import json
import sys

from scapy.all import ARP, Ether, conf, srp  # type: ignore[attr-defined]


def main() -> None:
    vip, iface, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    conf.verb = 0
    request = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, pdst=vip)
    answered, _ = srp(request, iface=iface, timeout=timeout, multi=True)
    macs = sorted(
        {reply[ARP].hwsrc for _, reply in answered if reply[ARP].op == 2 and reply[ARP].psrc == vip}
    )
    print(json.dumps(macs))


if __name__ == "__main__":
    main()
