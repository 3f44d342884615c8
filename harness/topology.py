"""The lab's fixed facts: service names, addresses, the VIP, timing of the lab's VRRP instance.

Owns: constants that compose.yaml and lab/dir*/keepalived.conf also state.  Must never: talk
to Docker or the network.
"""

from __future__ import annotations

PROJECT = "vipkeeper-lab"
VIP = "172.16.9.1"
VIP_PORT = 80
FRONT_NET = "frontend"
SERVERS_NET = "servers"
FRONT_IF = "eth0"
SERVERS_IF = "eth1"

DIRECTORS = ("dir1", "dir2")
REAL_SERVERS = ("rs1", "rs2")
CLIENT = "client"

# service -> address on the servers network (the address a real server's page names)
SERVERS_ADDR = {
    "dir1": "192.168.0.53",
    "dir2": "192.168.0.57",
    "rs1": "192.168.0.54",
    "rs2": "192.168.0.55",
}
CLIENT_ADDR = "172.16.0.100"

# lab/dir*/keepalived.conf: advert_int 1, priorities 150 (dir1, preferred master) and 100.
ADVERT_INT = 1.0
PRIORITY = {"dir1": 150, "dir2": 100}
PREFERRED_MASTER = "dir1"


def skew_time(priority: int, advert_int: float = ADVERT_INT) -> float:
    """RFC 3768 §6.1 Skew_Time = (256 - Priority) / 256 (seconds, VRRPv2 with advert_int 1)."""
    return (256 - priority) / 256 * advert_int


def master_down_interval(priority: int, advert_int: float = ADVERT_INT) -> float:
    """RFC 3768 §6.1 Master_Down_Interval = 3 * Advertisement_Interval + Skew_Time."""
    return 3 * advert_int + skew_time(priority, advert_int)
