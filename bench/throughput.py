"""Throughput through the VIP (client -> LVS-DR director -> real servers) vs one real server direct.

Run (root, iproute2, wrk, nginx):
    .venv/bin/python bench/throughput.py [--duration 10] [--repeat 3] [--cpu-quota 0.2]

The lab is vipkeeper.testing.lbnet: a client, director d1 running `vipkeeper run` (VRRP puts the VIP
on its fe0; the nftables DR data plane forwards), real servers rs1 / rs2 on their own links with
the VIP on lo. Each real server runs nginx (one worker, no access log, `/whoami` a 3-byte file);
wrk runs in the client namespace.

All of it shares one 2-core machine, so a real server is not a machine of its own. To measure
what the director costs rather than how the namespaces share the CPU, each real server's nginx is
capped at `--cpu-quota` of one core (a cgroup v1 `cpu` group, CFS quota): then a real server's
capacity is the same whether it is reached directly or through the director, as with real
hardware, and the director's forwarding has to keep up with two of them. The same runs are also
made uncapped (`--no-cap` skips the capped run), where every path is bound by the shared CPU,
and last with rs2's nginx stopped: the health checks take it out of the pool and one uncapped
real server is measured directly and through the VIP, the director's own cost per request.

Reported, per configuration: requests/s direct to rs1 and through the VIP (medians of
`--repeat` alternated runs), which real servers served (nginx stub_status counters), and the
ratio  VIP / (direct x servers serving); target >= 0.95.
Nothing leaves the lab's namespaces; namespaces, processes and cgroups are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from vipkeeper.testing.lbnet import REAL_SERVERS, VIP, LbNet, director_config
from vipkeeper.testing.waits import wait_until

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
WRK = shutil.which("wrk") or "wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {pid};
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 0.0.0.0:80 reuseport;
        root {root};
        location /whoami {{ }}
        location = /nginx_status {{ stub_status; allow 127.0.0.1; deny all; }}
    }}
}}
"""


class Cgroup:
    """A cgroup v1 `cpu` group with a CFS quota of `cores` cores."""

    def __init__(self, name: str, cores: float) -> None:
        self.path = CGROUP_CPU / name
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        # only empty groups can go: the caller has stopped the processes in it
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


class Nginx:
    def __init__(self, net: LbNet, name: str, workdir: Path) -> None:
        self.net, self.name = net, name
        root = workdir / f"nginx-{name}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "whoami").write_text(name)
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(pid=root / "nginx.pid", root=root))
        self.process = net.popen(name, NGINX, "-c", str(conf), "-p", str(root))
        wait_until(
            lambda: self.requests() >= 0, timeout=10, what=f"nginx in {name}", ignore=(Exception,)
        )

    def requests(self) -> int:
        """Requests served so far (stub_status), asked over the namespace's loopback."""
        out = self.net.run(
            self.name,
            sys.executable,
            "-c",
            "import urllib.request;"
            "print(urllib.request.urlopen('http://127.0.0.1/nginx_status', timeout=2).read()"
            ".decode())",
        )
        match = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", out, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no stub_status counters in {out!r}")
        return int(match.group(3))

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def wrk(net: LbNet, url: str, duration: int, connections: int) -> float:
    """Requests per second wrk reached against `url` from the client namespace."""
    out = net.run("cli", WRK, "-t2", f"-c{connections}", f"-d{duration}s", url)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    if errors is not None:
        print(f"    wrk reported errors: {errors.group(0)}")
    return float(match.group(1))


@contextlib.contextmanager
def lab(workdir: Path) -> Iterator[LbNet]:
    with LbNet(workdir) as net:
        daemon = net.start_vipkeeper("d1", director_config(priority=150))
        try:
            wait_until(lambda: daemon.states()[-1:] == ["MASTER"], timeout=10, what="d1 MASTER")
            wait_until(
                lambda: (
                    net.run("d1", "nft", "list", "map", "netdev", "vipkeeper", "vs0_buckets").count(
                        "goto vs0_rs1"
                    )
                    > 0
                ),
                timeout=10,
                what="DR pool with both real servers",
                ignore=(Exception,),
            )
            yield net
        finally:
            daemon.stop()


def measure(
    net: LbNet, servers: dict[str, Nginx], duration: int, connections: int, repeat: int
) -> dict[str, object]:
    """Direct and through-VIP runs, alternated `repeat` times (the machine is shared with
    whatever else runs on it: alternating spreads that noise over both); medians reported."""
    rs1_front = REAL_SERVERS["rs1"][0]
    wrk(net, f"http://{rs1_front}/whoami", 2, connections)  # warm up
    direct: list[float] = []
    through: list[float] = []
    served = dict.fromkeys(servers, 0)
    for _ in range(repeat):
        direct.append(wrk(net, f"http://{rs1_front}/whoami", duration, connections))
        before = {name: server.requests() for name, server in servers.items()}
        through.append(wrk(net, f"http://{VIP}/whoami", duration, connections))
        for name, server in servers.items():
            served[name] += server.requests() - before[name]
    total = sum(served.values()) or 1
    serving = [name for name, count in served.items() if count > 0.05 * total]
    direct_rps, vip_rps = statistics.median(direct), statistics.median(through)
    return {
        "direct_rps": round(direct_rps),
        "vip_rps": round(vip_rps),
        "direct_runs": [round(x) for x in direct],
        "vip_runs": [round(x) for x in through],
        "share": {name: round(count / total, 3) for name, count in served.items()},
        "servers_serving": len(serving),
        "ratio_per_server": round(vip_rps / (direct_rps * max(len(serving), 1)), 3),
    }


def add_measure_options(
    parser: argparse.ArgumentParser, *, connections: int, repeat: int, per: str
) -> None:
    """The options `measure` is called with: --duration and --connections for each wrk run,
    --repeat direct/VIP pairs `per` what the benchmark compares."""
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=connections)
    parser.add_argument("--repeat", type=int, default=repeat, help=f"direct/VIP pairs per {per}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_measure_options(parser, connections=32, repeat=3, per="setting")
    parser.add_argument("--cpu-quota", type=float, default=0.2, help="cores per real server")
    parser.add_argument("--no-cap", action="store_true", help="skip the capped runs")
    args = parser.parse_args()

    print(f"# {platform.node()} {platform.machine()} {platform.release()}, "
          f"wrk -t2 -c{args.connections} -d{args.duration}s, nginx 1 worker")  # fmt: skip
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="vkbench") as tmp, lab(Path(tmp)) as net:
        servers: dict[str, Nginx] = {}
        groups: list[Cgroup] = []
        try:
            for name in REAL_SERVERS:
                net.stop_http(name)
                servers[name] = Nginx(net, name, Path(tmp))
            results["uncapped"] = measure(
                net, servers, args.duration, args.connections, args.repeat
            )
            print(f"uncapped: {json.dumps(results['uncapped'])}", flush=True)
            if not args.no_cap:
                tag = secrets.token_hex(3)
                for name, server in servers.items():
                    group = Cgroup(f"vkbench{tag}{name}", args.cpu_quota)
                    groups.append(group)
                    group.add(server.process.pid)
                label = f"capped {args.cpu_quota:g} core/server"
                results[label] = measure(net, servers, args.duration, args.connections, args.repeat)
                print(f"{label}: {json.dumps(results[label])}", flush=True)
            # the director's own cost, machine-bound: one real server, direct vs through the VIP
            servers.pop("rs2").stop()
            for group in groups:
                with contextlib.suppress(OSError):
                    (group.path / "cpu.cfs_quota_us").write_text("-1")
            wait_until(
                lambda: (
                    "goto vs0_rs1"
                    not in net.run("d1", "nft", "list", "map", "netdev", "vipkeeper", "vs0_buckets")
                ),
                timeout=15,
                what="rs2 out of the DR pool",
                ignore=(Exception,),
            )
            label = "uncapped, rs1 alone in the pool"
            results[label] = measure(net, servers, args.duration, args.connections, args.repeat)
            print(f"{label}: {json.dumps(results[label])}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
            for group in groups:
                group.remove()
    print()
    print("| configuration | direct to rs1 (req/s) | through VIP (req/s) | servers | share "
          "| VIP / (direct x servers) |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|")
    for label, row in results.items():
        share = ", ".join(f"{k} {v:.0%}" for k, v in row["share"].items())  # type: ignore[attr-defined]
        print(f"| {label} | {row['direct_rps']} | {row['vip_rps']} | {row['servers_serving']} "
              f"| {share} | {row['ratio_per_server']} |")  # fmt: skip


if __name__ == "__main__":
    main()
