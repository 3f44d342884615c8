"""harness: drive the vipkeeper Compose lab from tests.

`topology` reads the lab from compose.yaml and the directors' keepalived.conf; `Lab` finds the
running Compose project's containers; `probes` measure it from inside its containers (the host
never sends lab traffic); `faults` break it on purpose, each fault an object with apply/undo;
`wait_until` (vipkeeper.testing.waits) polls with a stated bound; `timeline` writes JSON + PNG
artifacts; `restore.restore` puts the lab back in its starting state.
"""

from harness.faults import FAULTS, Fault, make
from harness.lab import ExecResult, Lab, LabError
from harness.probes import (
    ArpAnswer,
    HttpProber,
    Request,
    VipWatcher,
    arp_answers,
    client_vip_mac,
    holds_vip,
    http_get,
    masters,
    servers_answering,
    vip_holders,
)
from harness.timeline import Mark, Timeline
from harness.topology import Topology, lab_topology
from vipkeeper.testing.waits import WaitTimeout, wait_until

__all__ = [
    "FAULTS",
    "ArpAnswer",
    "ExecResult",
    "Fault",
    "HttpProber",
    "Lab",
    "LabError",
    "Mark",
    "Request",
    "Timeline",
    "Topology",
    "VipWatcher",
    "WaitTimeout",
    "arp_answers",
    "client_vip_mac",
    "holds_vip",
    "http_get",
    "lab_topology",
    "make",
    "masters",
    "servers_answering",
    "vip_holders",
    "wait_until",
]
