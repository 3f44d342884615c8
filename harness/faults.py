"""Faults: the things that go wrong in a cluster, done to the lab on purpose, each timestamped.

Owns: how each fault is made and undone (container kill/stop/pause, link down, a VRRP-only
partition with nftables inside the directors, httpd down, ARP suppression off).  Must never:
leave a fault behind that its undo does not remove; touch anything outside the lab.
"""

from __future__ import annotations

import time

from harness.lab import Lab
from harness.timeline import Timeline
from harness.topology import DIRECTORS, FRONT_IF

PARTITION_TABLE = "harness_partition"


class Faults:
    """Fault actions on `lab`; each one is marked on `timeline` (if given) at the moment it
    was done, and returns that moment (wall clock, seconds)."""

    def __init__(self, lab: Lab, timeline: Timeline | None = None) -> None:
        self.lab, self.timeline = lab, timeline

    def _mark(self, label: str, kind: str = "fault") -> float:
        now = time.time()
        if self.timeline is not None:
            self.timeline.mark(label, kind=kind, at=now)
        return now

    # containers
    def kill(self, service: str) -> float:
        self.lab.kill(service)
        return self._mark(f"kill {service}")

    def stop(self, service: str) -> float:
        self.lab.stop(service)
        return self._mark(f"stop {service}")

    def start(self, service: str) -> float:
        self.lab.start(service)
        return self._mark(f"start {service}", kind="repair")

    def pause(self, service: str) -> float:
        self.lab.pause(service)
        return self._mark(f"pause {service}")

    def unpause(self, service: str) -> float:
        self.lab.unpause(service)
        return self._mark(f"unpause {service}", kind="repair")

    # links
    def link_down(self, service: str, iface: str = FRONT_IF) -> float:
        self.lab.exec(service, ["ip", "link", "set", "dev", iface, "down"], check=True)
        return self._mark(f"link down {service}/{iface}")

    def link_up(self, service: str, iface: str = FRONT_IF) -> float:
        self.lab.exec(service, ["ip", "link", "set", "dev", iface, "up"], check=True)
        return self._mark(f"link up {service}/{iface}", kind="repair")

    # VRRP-only partition: each director stops hearing the other's adverts (IP protocol 112);
    # everything else, ARP and client traffic included, still flows.
    def partition_vrrp(self, directors: tuple[str, ...] = DIRECTORS) -> float:
        rules = (
            f"table inet {PARTITION_TABLE} {{\n"
            "  chain input { type filter hook input priority -300; ip protocol 112 drop; }\n"
            "  chain output { type filter hook output priority -300; ip protocol 112 drop; }\n"
            "}\n"
        )
        for director in directors:
            self.lab.exec(director, ["nft", rules], check=True)
        return self._mark("VRRP partition")

    def heal_vrrp(self, directors: tuple[str, ...] = DIRECTORS) -> float:
        for director in directors:
            if self.lab.state(director) == "running":
                self.lab.exec(director, ["nft", "delete", "table", "inet", PARTITION_TABLE])
        return self._mark("VRRP partition healed", kind="repair")

    # real servers
    def httpd_down(self, real_server: str) -> float:
        self.lab.exec(real_server, ["apache2ctl", "-k", "stop"], check=True)
        return self._mark(f"httpd down {real_server}")

    def httpd_up(self, real_server: str) -> float:
        self.lab.exec(real_server, ["apache2ctl", "-k", "start"], check=True)
        return self._mark(f"httpd up {real_server}", kind="repair")

    def arp_suppression(self, real_server: str, *, on: bool) -> float:
        """Turn arp_ignore/arp_announce on (1/2) or off (0/0) on a real server, from a helper
        that shares its network namespace (the real server's /proc/sys is read-only)."""
        ignore, announce = (1, 2) if on else (0, 0)
        script = (
            "set -e; for d in /proc/sys/net/ipv4/conf/*; do "
            f'echo {ignore} > "$d/arp_ignore"; echo {announce} > "$d/arp_announce"; done'
        )
        result = self.lab.netns_run(real_server, script, writable_sysctls=True)
        if not result.ok:
            raise RuntimeError(f"{real_server}: cannot set ARP sysctls: {result.output}")
        return self._mark(
            f"ARP suppression {'on' if on else 'off'} {real_server}",
            kind="repair" if on else "fault",
        )
