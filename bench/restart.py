"""Crash recovery: a killed top router, restarted, back to being the VIP's single holder.

Three routers on one bridge, r1 (priority 150), r2 (120) and r3 (100), one v3 instance
(advert_int 0.1, VIP 10.0.0.50/24, preemption on, all three of the same daemon), and a listener
(`vipkeeper.testing.adverts`, kernel receive times). Once r1 is Master, its daemon is killed
(`Lab.kill_all`: frozen, then SIGKILL, so it sends no priority 0 and its VIP stays on its
interface) and r2 takes over. Then r1's daemon starts again (the wall-clock time just before
`Popen` is its exec time): it enters BACKUP, discards r2's lower-priority adverts and, when its
Master_Down_Timer expires, becomes Master and advertises; r2 hears that advert and leaves. So:

    r1's first advert on the wire - exec       back to a single holder
    ... - r1's Master_Down_Interval            its start-up: exec to in the election

and the run checks r2 sent nothing after r1's first advert but what was already under way
(within one advert interval), and that r1 alone holds the VIP at the end. Runs alternate
between the daemons; medians per daemon are printed, with their difference.

    sudo .venv/bin/python bench/restart.py [--runs 10] [--markdown]

Root only; all traffic stays inside the lab's namespaces, which are removed after every run.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import threading
import time
from pathlib import Path

from _netns import (
    DAEMONS,
    Daemon,
    keepalived_conf,
    listen_for_adverts,
    machine_summary,
    start_daemon,
    vips_on,
)
from vipkeeper.core import timing
from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import wait_until

VERSION = 3
ADVERT_INT = 0.1
VIP = "10.0.0.50/24"
PRIORITIES = {"r1": 150, "r2": 120, "r3": 100}
LISTENER = "10.0.0.9"
MASTER_DOWN = timing.master_down_interval(
    version=VERSION, priority=PRIORITIES["r1"], master_adver_interval=ADVERT_INT
)


class Listener:
    """The adverts the listener host hears, (kernel time, source, priority), as they come."""

    def __init__(self, lab: Lab, host: Host) -> None:
        self.heard: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()
        self._process = listen_for_adverts(lab, host, LISTENER)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            stamp, source, priority = line.split()
            with self._lock:
                self.heard.append((float(stamp), source, int(priority)))

    def since(self, moment: float, source: str) -> list[float]:
        """Kernel times of the adverts from `source` heard after `moment`."""
        with self._lock:
            return [at for at, src, _ in self.heard if src == source and at > moment]


def _address(name: str) -> str:
    return f"10.0.0.{name[1:]}"


def _start(lab: Lab, host: Host, daemon: str) -> Daemon:
    conf = keepalived_conf(
        router_id=host.name,
        priority=PRIORITIES[host.name],
        version=VERSION,
        advert_int=ADVERT_INT,
        vips=[(51, VIP)],
    )
    return start_daemon(lab, host, daemon, conf)


def _single_holder(hosts: dict[str, Host], holder: str) -> bool:
    return all((VIP in vips_on(host)) == (name == holder) for name, host in hosts.items())


def one_run(daemon: str) -> dict[str, float]:
    with Lab() as lab:
        hosts = {name: lab.add_host(name, [f"{_address(name)}/24"]) for name in PRIORITIES}
        listener = Listener(lab, lab.add_host("listen", [f"{LISTENER}/24"]))
        for host in hosts.values():
            _start(lab, host, daemon)
        wait_until(lambda: _single_holder(hosts, "r1"), timeout=30, what="r1 holds the VIP")
        lab.kill_all(hosts["r1"])
        wait_until(lambda: VIP in vips_on(hosts["r2"]), timeout=30, what="r2 takes over")
        killed_at = time.time()
        wait_until(
            lambda: len(listener.since(killed_at, _address("r2"))) >= 3,
            timeout=30,
            what="r2 advertising as Master",
        )
        exec_at = time.time()
        restarted = _start(lab, hosts["r1"], daemon)
        first = wait_until(
            lambda: listener.since(exec_at, _address("r1")),
            timeout=30,
            what=f"r1's first advert after its restart\n{restarted.log()}",
        )[0]
        # r2 leaves on hearing it: at most an advert already on its way comes after
        wait_until(
            lambda: len(listener.since(first, _address("r1"))) >= 3,
            timeout=30,
            what="r1 advertising as Master",
        )
        late = listener.since(first + ADVERT_INT, _address("r2"))
        if late:
            raise RuntimeError(f"{daemon}: r2 still advertising {late[-1] - first:.3f} s later")
        if not _single_holder(hosts, "r1"):
            raise RuntimeError(f"{daemon}: r1 is not the VIP's single holder after its restart")
        return {"single_holder": first - exec_at, "start_up": first - exec_at - MASTER_DOWN}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    import vipkeeper

    compileall.compile_dir(str(Path(vipkeeper.__file__).parent), quiet=1)
    results: dict[str, list[dict[str, float]]] = {daemon: [] for daemon in DAEMONS}
    for run in range(args.runs):
        for daemon in DAEMONS:
            result = one_run(daemon)
            results[daemon].append(result)
            print(f"run {run} {daemon}: single holder {result['single_holder'] * 1000:.0f} ms "
                  "after the restart", file=sys.stderr, flush=True)  # fmt: skip
    median = {
        daemon: {key: statistics.median(r[key] for r in runs) * 1000 for key in runs[0]}
        for daemon, runs in results.items()
    }
    print(f"# {machine_summary()}")
    print(f"# {args.runs} runs per daemon, r1's Master_Down_Interval {MASTER_DOWN * 1000:.1f} ms")
    rows = (
        ("exec to the single holder, median (ms)", "single_holder"),
        ("exec to in the election, median (ms)", "start_up"),
    )
    if args.markdown:
        print("| | keepalived | vipkeeper | difference |\n|---|---|---|---|")
    for label, key in rows:
        kept, ours = median["keepalived"][key], median["vipkeeper"][key]
        if args.markdown:
            print(f"| {label} | {kept:.0f} | {ours:.0f} | {ours - kept:+.0f} |")
        else:
            print(f"{label:<40} keepalived {kept:6.0f}   vipkeeper {ours:6.0f}   "
                  f"difference {ours - kept:+.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
