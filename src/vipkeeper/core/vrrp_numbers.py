"""The numbers and addresses VRRP's RFCs assign, apart from the codec (`vrrp_wire`).

Owns: VRRP's IP protocol number, the TTL or hop limit its packets must carry and its IPv4 and IPv6
multicast groups. The configuration and the launch's sockets read them before the election,
without loading the codec. Must never: import anything.
"""

from __future__ import annotations

VRRP_PROTOCOL = 112  # IANA protocol number, RFC 3768 §5.2 / RFC 9568 §5.1.1.4
VRRP_TTL = 255  # RFC 3768 §5.2.3, RFC 9568 §5.1.1.3 / §5.1.2.3: TTL / hop limit must be 255
MULTICAST_V4 = "224.0.0.18"  # RFC 3768 §5.2.2, RFC 9568 §5.1.1.2
MULTICAST_V6 = "ff02::12"  # RFC 9568 §5.1.2.2
