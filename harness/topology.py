"""The lab's fixed facts: service names, addresses, the VIP, timing of the lab's VRRP instance.

Owns: constants that compose.yaml and lab/dir*/keepalived.conf also state.  Must never: talk
to Docker or the network.
"""

from __future__ import annotations

from pathlib import Path

PROJECT = "vipkeeper-lab"
ROOT = Path(__file__).resolve().parents[1]  # the repository: compose.yaml and lab/ live here
COMPOSE_FILE = ROOT / "compose.yaml"
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


# The directors' configuration files: compose.yaml mounts ${LAB_DIR1_CONF} / ${LAB_DIR2_CONF}
# (default lab/dirN/keepalived.conf).  A variant is one file per director.
CONF_ENV = {"dir1": "LAB_DIR1_CONF", "dir2": "LAB_DIR2_CONF"}
DEFAULT_CONF = {d: f"./lab/{d}/keepalived.conf" for d in DIRECTORS}
NOPREEMPT_CONF = {d: f"./lab/{d}/keepalived.nopreempt.conf" for d in DIRECTORS}


# lab/dir*/keepalived.conf, HTTP_GET on each real server: delay_loop 2, connect_timeout 1,
# retry 1, delay_before_retry 1.
DELAY_LOOP = 2.0
CONNECT_TIMEOUT = 1.0
RETRY = 1
DELAY_BEFORE_RETRY = 1.0


def health_down_bound() -> float:
    """Longest time from a real server failing to its last check failing (keepalived's
    checker semantics): the failure starts just after a good check, so the next check comes
    one delay_loop later; it and each of its `retry` retries may take connect_timeout, with
    delay_before_retry between them."""
    return DELAY_LOOP + (RETRY + 1) * CONNECT_TIMEOUT + RETRY * DELAY_BEFORE_RETRY


def health_up_bound() -> float:
    """Longest time from a failed real server answering again to its next (good) check."""
    return DELAY_LOOP + CONNECT_TIMEOUT


# Added to protocol bounds in the lab tests: the daemon's reaction (a netlink write, an nft
# transaction) plus the harness seeing it (a `docker exec` poll every 0.1 s takes ~0.1-0.5 s on a
# busy 2-core machine).
REACTION_MARGIN = 2.0


# The lab's Prometheus (compose.yaml, lab/prometheus/prometheus.yml): where its HTTP API
# answers and how often it scrapes the directors.
PROMETHEUS = "prometheus"
PROMETHEUS_URL = "http://172.16.0.90:9090"
SCRAPE_INTERVAL = 1.0
