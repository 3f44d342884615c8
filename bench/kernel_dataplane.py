"""LVS data planes and health checkers on a kernel with IPVS: vipkeeper vs the direct path and
vs keepalived, side by side in one run. Meant for the test VM (`make bench-kernel`), whose
emulated CPU makes absolute figures meaningless: only the ratios are reported.

  throughput  tests/netns/lbnet.py's LVS-DR lab (client, director d1, real servers rs1 / rs2
              serving nginx): wrk from the client to rs1 directly and to the VIP, alternated,
              once with vipkeeper's IPVS data plane (`lvs_backend ipvs`) and once with its
              nftables one (`lvs_backend nftables`). Ratio: VIP / (direct x servers serving).
  checkers    one namespace, one nginx answering on 1,000 addresses (a /22 on lo); the same
              keepalived.conf text (one virtual server, 1,000 real servers, TCP_CHECK, then
              HTTP_GET) run by keepalived's checker process (`keepalived -C`) and by
              `vipkeeper run`, one after the other. CPU is user + system time of keepalived's
              checker process, and of the whole vipkeeper process, over the same window once
              every real server is in the IPVS table. Ratio: vipkeeper / keepalived.

Run (root, in the VM: ip_vs loaded; wrk, nginx, keepalived, ipvsadm installed):
    .venv/bin/python bench/kernel_dataplane.py [--duration 10] [--repeat 2] [--window 30]
Nothing leaves the namespaces it makes; they and their processes are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from throughput import NGINX, Nginx, add_measure_options, measure  # noqa: E402
from vipkeeper.testing.daemons import vipkeeper_argv  # noqa: E402
from vipkeeper.testing.lbnet import REAL_SERVERS, LbNet, director_config  # noqa: E402

KEEPALIVED = "/usr/sbin/keepalived"
CHECK_VIP = "10.99.0.1"
CHECK_NET = "10.200.0.0/22"  # on lo: every address in it is local, one nginx answers them all
TICKS = 100  # USER_HZ: /proc/PID/stat counts CPU time in 1/100 s


def wait_until(what: str, timeout: float, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not within {timeout:g} s")


# -- throughput ---------------------------------------------------------------------------------


def ipvs_ready(net: LbNet) -> bool:
    out: str = net.run("d1", "ipvsadm", "-Ln")
    return out.count("Route") >= len(REAL_SERVERS)


def nft_ready(net: LbNet) -> bool:
    out: str = net.run("d1", "nft", "list", "map", "netdev", "vipkeeper", "vs0_buckets")
    return "goto vs0_rs0" in out and "goto vs0_rs1" in out  # one chain per real server


def throughput(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    with LbNet(workdir) as net:
        servers: dict[str, Nginx] = {}
        try:
            for name in REAL_SERVERS:
                net.stop_http(name)
                servers[name] = Nginx(net, name, workdir)
            for backend, ready in (("ipvs", ipvs_ready), ("nftables", nft_ready)):
                config = director_config(priority=150, global_lines=[f"lvs_backend {backend}"])
                daemon = net.start_vipkeeper("d1", config)
                try:
                    wait_until(f"{backend}: d1 MASTER", args.bound,
                               lambda d=daemon: d.states()[-1:] == ["MASTER"])  # type: ignore[misc]  # fmt: skip
                    wait_until(f"{backend}: both real servers", args.bound,
                               lambda r=ready: r(net))  # type: ignore[misc]  # fmt: skip
                    row = measure(net, servers, args.duration, args.connections, args.repeat)
                except TimeoutError as error:
                    print(f"throughput {backend}: {error}\n{daemon.log()[-3000:]}", flush=True)
                    continue
                finally:
                    daemon.stop(timeout=args.bound)
                results[backend] = row
                print(f"throughput {backend}: {json.dumps(row)}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    return results


# -- checkers -----------------------------------------------------------------------------------


def check_config(servers: int, mode: str, delay_loop: float) -> str:
    if mode == "http":
        check = ["HTTP_GET {", "url {", "path /hc", "status_code 200", "}", "connect_timeout 3",
                 "retry 1", "delay_before_retry 1", "}"]  # fmt: skip
    else:
        check = ["TCP_CHECK {", "connect_timeout 3", "retry 1", "delay_before_retry 1", "}"]
    lines = ["global_defs {", "router_id checkers", "}",
             f"virtual_server {CHECK_VIP} 80 {{", f"delay_loop {delay_loop:g}", "lb_algo rr",
             "lb_kind DR", "protocol TCP"]  # fmt: skip
    for index in range(1, servers + 1):
        address = f"10.200.{index // 256}.{index % 256}"
        lines += [f"real_server {address} 80 {{", "weight 1", *check, "}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


NGINX_CHECKS = """\
worker_processes 1;
daemon off;
master_process off;
worker_rlimit_nofile 16384;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    server {{
        listen 0.0.0.0:80 backlog=4096;
        location /hc {{ return 200 "ok\\n"; }}
    }}
}}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def ipvs_destinations(ns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", "-Ln"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return out.count("Route")


@contextlib.contextmanager
def checker_namespace(workdir: Path) -> Iterator[str]:
    ns = f"vkhc{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for argv in (["link", "set", "lo", "up"], ["addr", "add", CHECK_NET, "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        root = workdir / "nginx-checks"
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CHECKS.format(root=root))
        nginx = subprocess.Popen(
            ["ip", "netns", "exec", ns, NGINX, "-c", str(conf), "-p", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        yield ns
    finally:
        if nginx is not None:
            nginx.kill()
            nginx.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def run_checker(
    ns: str, who: str, config: Path, servers: int, args: argparse.Namespace
) -> dict[str, float]:
    """Start `who` on `config`, wait for the full table, then measure its CPU over the window."""
    directory = config.parent / who
    directory.mkdir(exist_ok=True)
    if who == "keepalived":
        argv = [KEEPALIVED, "-n", "-C", "-l", "-D", "-G", "-f", str(config),
                "-p", str(directory / "ka.pid"), "-c", str(directory / "checkers.pid")]  # fmt: skip
    else:
        argv = [*vipkeeper_argv(), "run", "-f", str(config), "--pidfile", str(directory / "vk.pid"),
                "--control-socket", str(directory / "vk.sock")]  # fmt: skip
    with (directory / "log").open("wb") as log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(f"{who}: {servers} real servers in IPVS", args.bound,
                   lambda: ipvs_destinations(ns) >= 0.95 * servers)  # fmt: skip
        pid = int((directory / "checkers.pid").read_text()) if who == "keepalived" else process.pid
        time.sleep(args.settle)  # the first round of checks, spread over delay_loop
        before, start = cpu_seconds(pid), time.monotonic()
        time.sleep(args.window)  # the measurement window itself: a fixed length by nature
        used, elapsed = cpu_seconds(pid) - before, time.monotonic() - start
        still = ipvs_destinations(ns)
    finally:
        process.terminate()
        try:
            process.wait(timeout=args.bound)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", "-C"], check=False)
    return {"cpu_s": round(used, 2), "core_share": round(used / elapsed, 4), "servers_up": still}


def checkers(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    with checker_namespace(workdir) as ns:
        for mode in ("tcp", "http"):
            config = workdir / f"checks-{mode}" / "keepalived.conf"
            config.parent.mkdir(parents=True)
            config.write_text(check_config(args.servers, mode, args.delay_loop))
            row: dict[str, object] = {}
            for who in ("keepalived", "vipkeeper"):
                row[who] = run_checker(ns, who, config, args.servers, args)
                print(f"checkers {mode} {who}: {json.dumps(row[who])}", flush=True)
            ka, vk = row["keepalived"], row["vipkeeper"]
            row["ratio_vk_ka"] = round(vk["cpu_s"] / max(ka["cpu_s"], 0.01), 2)  # type: ignore[index]
            results[mode] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_measure_options(parser, connections=16, repeat=2, per="data plane")
    parser.add_argument("--servers", type=int, default=1000, help="real servers to check")
    parser.add_argument("--delay-loop", type=float, default=10.0, help="seconds between checks")
    parser.add_argument("--window", type=float, default=30.0, help="CPU measurement seconds")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--bound", type=float, default=300.0, help="most any wait may take")
    parser.add_argument("--only", choices=("throughput", "checkers"))
    parser.add_argument(
        "--workdir", type=Path, help="keep configs and logs here (default: temporary)"
    )
    args = parser.parse_args()

    print(f"# {platform.node()} {platform.machine()} {platform.release()}, "
          f"wrk -t2 -c{args.connections} -d{args.duration}s x{args.repeat}; "
          f"{args.servers} real servers, delay_loop {args.delay_loop:g}, "
          f"window {args.window:g} s", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vkbench") as tmp:
        workdir = args.workdir or Path(tmp)
        shutil.rmtree(workdir / "lb", ignore_errors=True)
        shutil.rmtree(workdir / "checks", ignore_errors=True)
        flows = throughput(args, workdir / "lb") if args.only != "checkers" else {}
        checks = checkers(args, workdir / "checks") if args.only != "throughput" else {}
    print()
    if flows:
        print("| data plane | VIP / (direct x servers) | VIP req/s / IPVS VIP req/s |")
        print("|---|---:|---:|")
        ipvs_rps = float(flows["ipvs"]["vip_rps"]) if "ipvs" in flows else 0.0  # type: ignore[arg-type]
        for backend, row in flows.items():
            share = float(row["vip_rps"]) / ipvs_rps if ipvs_rps else float("nan")  # type: ignore[arg-type]
            print(f"| {backend} DR | {row['ratio_per_server']} | {share:.2f} |")
    if checks:
        print("| checker | CPU vipkeeper / keepalived | real servers up (ka, vk) |")
        print("|---|---:|---|")
        for mode, row in checks.items():
            ka, vk = row["keepalived"], row["vipkeeper"]
            up = f"{ka['servers_up']}, {vk['servers_up']}"  # type: ignore[index]
            print(f"| {mode} | {row['ratio_vk_ka']} | {up} |")


if __name__ == "__main__":
    main()
