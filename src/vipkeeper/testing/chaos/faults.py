"""The chaos soak's faults: what can go wrong, in which order, and how each is done and undone.

Owns: the fault catalogue, the generator that turns a seed into a fault sequence (never timing),
and injecting a fault into the LAN with the function that heals it (`apply_fault`).

The catalogue: kill and restart, SIGSTOP/SIGCONT, link down, a VRRP-only partition, VRRP loss,
a slow link, reordered adverts, duplicated adverts, priority changes through a track script,
reloads.

Faults that sch_netem would give (loss, delay, reordering) are built from what every kernel
with nftables and HTB has, so a seed plays the same faults on any host: loss is an nftables
`numgen random` drop of VRRP on the bridge; delay is a tbf shaper on the target's link
(queueing delay for every burst; `Soak.netem` tells whether the kernel has sch_netem, and with
it, the slow link is netem delay/reorder instead); reordering sends a seeded share of the
target's VRRP packets (nftables `numgen random`, `meta priority`) into a slow HTB class that
holds each for about the seeded delay, longer than an advert interval, while the rest leave at
once, so adverts sent later arrive first; duplicates are an nftables `dup` of the Master's
adverts to every other port.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vipkeeper.testing.chaos.lan import OBSERVER, ROUTERS
from vipkeeper.testing.netns import Host

if TYPE_CHECKING:
    from vipkeeper.testing.chaos.soak import Soak

REORDER_FRAME_BITS = 46 * 8  # a v3 advert with one IPv4 VIP as HTB counts it (Ethernet frame)
# Reordering: a share of the target's VRRP packets each held for a delay longer than advert_int
# (so later adverts overtake it). The slow class lets one frame through per delay, so share x
# delay stays within half an advert interval: it keeps up, and a held packet waits about the
# delay rather than queueing behind the others (which would be loss, not reordering).
REORDER_PERCENT = (10, 20)  # percent, in steps of 5
REORDER_DELAY_MS = (250, 500)  # milliseconds, in steps of 50

FAULTS = (
    "kill", "stop", "link", "partition", "loss", "slow", "reorder", "dup", "priority", "reload"
)  # fmt: skip
# Faults after which the VIP may move; the others must leave the holders alone.
DISTURBING = {"kill", "stop", "link", "partition", "loss", "slow", "reorder", "priority"}


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    hold: float  # seconds the fault lasts before its heal
    steady: float  # seconds of steady phase after convergence
    peer: str = ""  # partition: the other side
    amount: int = 0  # loss, reorder: percent
    delay: int = 0  # reorder: milliseconds a held-back packet waits

    def describe(self) -> str:
        extra = f" peer={self.peer}" if self.peer else ""
        extra += f" amount={self.amount}" if self.amount else ""
        extra += f" delay={self.delay}ms" if self.delay else ""
        return f"{self.kind} {self.target}{extra} hold={self.hold:.2f} steady={self.steady:.2f}"


def fault_sequence(seed: int, kinds: Sequence[str] = FAULTS) -> Iterator[Fault]:
    """The faults of a soak, determined by the seed (and the kinds drawn from) alone, never by
    timing; `kinds` narrows the catalogue to study a few faults at length."""
    unknown = set(kinds) - set(FAULTS)
    if unknown or not kinds:
        raise ValueError(f"fault kinds {sorted(unknown)} not in {FAULTS}" if unknown
                         else "no fault kinds")  # fmt: skip
    rng = random.Random(seed)
    names = [name for name, _ in ROUTERS]
    while True:
        kind = rng.choice(kinds)
        candidates = [n for n in names if n != OBSERVER] if kind == "kill" else names
        target = rng.choice(candidates)
        peer = rng.choice([n for n in names if n != target]) if kind == "partition" else ""
        amount = rng.randrange(10, 60, 10) if kind == "loss" else 0
        delay = 0
        if kind == "reorder":
            amount = rng.randrange(REORDER_PERCENT[0], REORDER_PERCENT[1] + 1, 5)
            delay = rng.randrange(REORDER_DELAY_MS[0], REORDER_DELAY_MS[1] + 1, 50)
        hold = {
            "kill": rng.uniform(0.3, 3.0),
            "stop": rng.uniform(0.2, 4.0),
            "link": rng.uniform(0.5, 3.0),
            "partition": rng.uniform(1.0, 4.0),
            "loss": rng.uniform(2.0, 5.0),
            "slow": rng.uniform(2.0, 4.0),
            "reorder": rng.uniform(2.0, 5.0),
            "dup": rng.uniform(2.0, 4.0),
            "priority": 0.0,
            "reload": 0.0,
        }[kind]
        steady = round(rng.uniform(1.0, 3.0), 2)
        yield Fault(kind, target, round(hold, 2), steady, peer, amount, delay)


def has_netem() -> bool:
    """Whether this kernel has sch_netem (a throwaway namespace tries to attach one)."""
    ns = f"vkhard-netem-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "a0", "type", "veth", "peer", "b0"],
                       check=True, capture_output=True)  # fmt: skip
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "a0",
                                "root", "netem", "delay", "1ms"], capture_output=True)  # fmt: skip
        return probe.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


# -- injecting and healing ----------------------------------------------------------------------


def _nft(host: Host, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", host.ns, "nft", script], check=True,
                   capture_output=True, text=True, timeout=30)  # fmt: skip


def _bridge_nft(soak: Soak, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", soak.lab.bridge_ns, "nft", script], check=True,
                   capture_output=True, text=True, timeout=30)  # fmt: skip


def apply_fault(soak: Soak, fault: Fault) -> Callable[[], None]:
    """Inject `fault` into the soak's LAN; the function that heals it."""
    router = soak.routers[fault.target]
    host = router.host
    if fault.kind == "kill":
        router.kill()

        def restart() -> None:
            router.start()

        return restart
    if fault.kind == "stop":
        router.signal_all(signal.SIGSTOP)
        router.stopped = True

        def resume() -> None:
            router.signal_all(signal.SIGCONT)
            router.stopped = False

        return resume
    if fault.kind == "link":
        soak.lab.cut(host)
        return lambda: soak.lab.restore(host)
    if fault.kind == "partition":
        peer = soak.routers[fault.peer]
        for one, other in ((router, peer), (peer, router)):
            _nft(one.host, "add table inet vkchaos; "
                 "add chain inet vkchaos input { type filter hook input priority 0; }; "
                 f"add rule inet vkchaos input ip saddr {other.address} "
                 "ip protocol vrrp drop")  # fmt: skip

        def unpartition() -> None:
            for one in (router, peer):
                _nft(one.host, "delete table inet vkchaos")

        return unpartition
    if fault.kind == "loss":
        _bridge_nft(soak, "add table bridge vkchaos; "
                          "add chain bridge vkchaos loss "
                          "{ type filter hook forward priority 0; }; "
                          "add rule bridge vkchaos loss ip protocol vrrp "
                          f"numgen random mod 100 < {fault.amount} drop")  # fmt: skip
        return lambda: _bridge_nft(soak, "delete table bridge vkchaos")
    if fault.kind == "slow":
        if soak.netem:
            shaper = ["netem", "delay", "100ms", "50ms", "reorder", "25%"]
        else:
            shaper = ["tbf", "rate", "16kbit", "burst", "1600", "latency", "300ms"]
        soak.lab.run(host, "tc", "qdisc", "add", "dev", host.ifname, "root", *shaper)

        def unshape() -> None:
            soak.lab.run(host, "tc", "qdisc", "del", "dev", host.ifname, "root")

        return unshape
    if fault.kind == "reorder":
        return _reorder(soak, host, fault)
    if fault.kind == "dup":
        master = soak.expected_holder()
        port = soak.routers[master].host.port
        others = [r.host.port for n, r in soak.routers.items() if n != master]
        dups = "; ".join(
            f"add rule netdev vkchaos copies ip protocol vrrp dup to {other}" for other in others
        )
        _bridge_nft(soak, "add table netdev vkchaos; "
                          "add chain netdev vkchaos copies "
                          f"{{ type filter hook ingress device {port} priority 0; }}; "
                          + dups)  # fmt: skip
        return lambda: _bridge_nft(soak, "delete table netdev vkchaos")
    if fault.kind == "priority":
        router.flagged = not router.flagged
        if router.flagged:
            router.flag.touch()
        else:
            router.flag.unlink(missing_ok=True)
        return lambda: None
    if fault.kind == "reload":
        # keepalived's parent re-reads and restarts its VRRP child; vipkeeper reloads in place.
        pids = router.pids()
        if pids:
            os.kill(pids[0], signal.SIGHUP)
        return lambda: None
    raise ValueError(fault.kind)


def _reorder(soak: Soak, host: Host, fault: Fault) -> Callable[[], None]:
    """`fault.amount` percent of the host's outgoing VRRP packets wait about `fault.delay`
    ms in a slow HTB class (one frame per delay); everything else leaves at once."""
    rate = max(8, REORDER_FRAME_BITS * 1000 // fault.delay)  # bit/s
    tc = ["tc", "qdisc", "add", "dev", host.ifname, "root", "handle", "1:", "htb",
          "default", "10"]  # fmt: skip
    soak.lab.run(host, *tc)
    for classid, speed in (("1:10", "10gbit"), ("1:20", f"{rate}bit")):
        soak.lab.run(host, "tc", "class", "add", "dev", host.ifname, "parent", "1:",
                     "classid", classid, "htb", "rate", speed, "ceil", speed,
                     *(["burst", "1", "cburst", "1"] if classid == "1:20" else []))  # fmt: skip
    _nft(host, "add table inet vkreorder; "
         "add chain inet vkreorder out { type filter hook output priority 0; }; "
         "add rule inet vkreorder out ip protocol vrrp "
         f"numgen random mod 100 < {fault.amount} meta priority set 1:20")  # fmt: skip

    def unreorder() -> None:
        _nft(host, "delete table inet vkreorder")
        soak.lab.run(host, "tc", "qdisc", "del", "dev", host.ifname, "root")

    return unreorder
