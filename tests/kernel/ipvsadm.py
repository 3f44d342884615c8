"""What the kernel's IPVS table holds, read with `ipvsadm -Ln` (the operator's view, not ours).

`parse(text)` turns the listing into `{"TCP 172.16.9.1:80": Service(...)}`; each service keeps its
scheduler, its flags as ipvsadm prints them (`mh-port`, `sh-fallback`), its persistence timeout
and its destinations with forwarding method (`Route`, `Masq`) and weight.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

_SERVICE = re.compile(
    r"^(?P<proto>TCP|UDP|SCTP|FWM)\s+(?P<addr>\S+)\s+(?P<sched>\w+)"
    r"(?:\s+\((?P<flags>[^)]*)\))?(?:\s+persistent\s+(?P<persistent>\d+))?"
)
_DEST = re.compile(r"^\s+->\s+(?P<addr>\S+)\s+(?P<fwd>\w+)\s+(?P<weight>\d+)\s+\d+\s+\d+")


@dataclass
class Service:
    scheduler: str
    flags: frozenset[str]
    persistent: int | None
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)

    def weights(self) -> dict[str, int]:
        return {address: weight for address, (_fwd, weight) in self.destinations.items()}


def parse(text: str) -> dict[str, Service]:
    services: dict[str, Service] = {}
    current: Service | None = None
    for line in text.splitlines():
        if match := _SERVICE.match(line):
            flags = match["flags"]
            current = Service(
                scheduler=match["sched"],
                flags=frozenset(flags.split(",")) if flags else frozenset(),
                persistent=int(match["persistent"]) if match["persistent"] else None,
            )
            services[f"{match['proto']} {match['addr']}"] = current
        elif (match := _DEST.match(line)) and current is not None:
            current.destinations[match["addr"]] = (match["fwd"], int(match["weight"]))
    return services


def table(netns: str) -> dict[str, Service]:
    """The IPVS table of network namespace `netns`."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ipvsadm", "-Ln"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return parse(out)
