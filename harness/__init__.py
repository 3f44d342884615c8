"""harness: drive the vipkeeper Compose lab from tests.

`Lab` finds the running Compose project's containers; `probes` measure it from inside its
containers (the host never sends lab traffic); `faults` break it on purpose with timestamps;
`waits.wait_until` polls with a stated bound; `timeline` writes JSON + PNG artifacts;
`restore.restore` puts the lab back in its starting state.
"""

from harness.faults import Faults
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
from harness.waits import LabTimeout, wait_until

__all__ = [
    "ArpAnswer",
    "ExecResult",
    "Faults",
    "HttpProber",
    "Lab",
    "LabError",
    "LabTimeout",
    "Mark",
    "Request",
    "Timeline",
    "VipWatcher",
    "arp_answers",
    "client_vip_mac",
    "holds_vip",
    "http_get",
    "masters",
    "servers_answering",
    "vip_holders",
    "wait_until",
]
