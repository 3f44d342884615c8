"""Health-check N real servers on loopback: vipkeeper's CPU share and dead-server detection time.

A child process (this script with --serve) opens N listeners on 127.0.0.1 in one asyncio loop and
answers TCP connects or a minimal HTTP/1.0 reply. This process runs `core.health.HealthMonitor`
with `drivers.health.HealthScheduler` against all of them at `delay_loop` for `--duration` seconds
and measures its own CPU time (time.process_time, user + system of this process only) against
wall time. Then it breaks servers one at a time ("kill": the listener closes, so connects are
refused; "hang": HTTP mode only, the server accepts and never answers) and measures the time
from the break to the ServerDown order, against the configured bound

    delay_loop + (retry + 1) * connect_timeout + retry * delay_before_retry

(the last good check may end just before the break; the next check starts delay_loop later and
it plus `retry` retries, delay_before_retry apart, must fail, each taking at most
connect_timeout).

keepalived cannot serve as a baseline on this machine: its healthcheck child exits with "IPVS:
Can't initialize ipvs" (FATAL) when the kernel has no IPVS, before running any checker.

    .venv/bin/python bench/healthcheck.py --servers 1000 --duration 30 --mode http
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vipkeeper.core.health import (
    CheckerId,
    CheckerSpec,
    Endpoint,
    HealthEffect,
    HealthEvent,
    HealthMonitor,
    RealServerSpec,
    ServerDown,
    ServerUp,
    VirtualServerSpec,
)
from vipkeeper.drivers.health import HealthScheduler
from vipkeeper.io.checkers import (
    Checker,
    CheckInFlight,
    HttpGetCheck,
    ResultCallback,
    TcpCheck,
)
from vipkeeper.io.poller import SocketPoller

# The bound chains up to four timers (delay_loop, connect_timeout, delay_before_retry, ...); an
# asyncio timer fires up to about a millisecond late, more on a loaded machine. Detection within
# the bound plus this allowance counts as within the bound.
TIMER_ALLOWANCE = 0.05
LOCALHOST = "127.0.0.1"
HTTP_REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the real servers (child process) -------------------------------------------------------------


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, mode: str, hanging: set[int], port: int) -> None:
        self.mode, self.hanging, self.port = mode, hanging, port
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.mode == "http" and b"\r\n\r\n" in self.buffer and self.port not in self.hanging:
            assert self.transport is not None
            self.transport.write(HTTP_REPLY)
            self.transport.close()


async def serve(count: int, mode: str) -> None:
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    hanging: set[int] = set()
    servers: dict[int, asyncio.Server] = {}
    for _ in range(count):
        holder: list[int] = []
        server = await loop.create_server(
            lambda h=holder: _ServerProtocol(mode, hanging, h[0]), LOCALHOST, 0, backlog=128
        )
        port = server.sockets[0].getsockname()[1]
        holder.append(port)
        servers[port] = server
    print(json.dumps(sorted(servers)), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command, port_text = line.decode().split()
        port = int(port_text)
        if command == "kill":
            servers[port].close()
            await servers[port].wait_closed()
        elif command == "hang":
            hanging.add(port)
        print(f"{command} {port}", flush=True)


# --- the health checker (this process) ------------------------------------------------------------


class Counting:
    """Wraps a checker to count completed checks, keeping its task-free `start` if it has one."""

    def __init__(self, inner: Checker, counter: list[int]) -> None:
        self.inner, self.counter = inner, counter
        if callable(getattr(inner, "start", None)):
            self.start = self._start

    async def run(self, checker: CheckerId) -> HealthEvent:
        try:
            return await self.inner.run(checker)
        finally:
            self.counter[0] += 1

    def _start(
        self, checker: CheckerId, done: ResultCallback, poller: SocketPoller
    ) -> CheckInFlight:
        def counted(event: HealthEvent) -> None:
            self.counter[0] += 1
            done(event)

        return self.inner.start(checker, counted, poller)  # type: ignore[attr-defined]


class Watcher:
    def __init__(self) -> None:
        self.events: dict[tuple[type, Endpoint], asyncio.Future[float]] = {}
        self.downs = 0

    def expect(self, kind: type, server: Endpoint) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.events[(kind, server)] = future
        return future

    def __call__(self, effects: Sequence[HealthEffect]) -> None:
        now = asyncio.get_running_loop().time()
        for effect in effects:
            if isinstance(effect, ServerDown | ServerUp):
                self.downs += isinstance(effect, ServerDown)
                future = self.events.pop((type(effect), effect.server), None)
                if future is not None and not future.done():
                    future.set_result(now)


class ServerProcess:
    def __init__(self, count: int, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(count), "--mode", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.ports: list[int] = json.loads(self.process.stdout.readline())

    async def command(self, command: str, port: int) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{command} {port}\n")
        self.process.stdin.flush()
        answer = await asyncio.to_thread(self.process.stdout.readline)
        assert answer.split() == [command, str(port)], answer

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (/proc/PID/stat, clock ticks)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


async def bench(args: argparse.Namespace) -> dict[str, object]:
    raise_fd_limit()
    servers = ServerProcess(args.servers, args.mode)
    try:
        return await _bench(args, servers)
    finally:
        servers.close()


async def _bench(args: argparse.Namespace, servers: ServerProcess) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    endpoints = [Endpoint(address=LOCALHOST, port=port) for port in servers.ports]
    spec_of = {
        e: CheckerSpec(
            delay_loop=args.delay_loop,
            retry=args.retry,
            delay_before_retry=args.delay_before_retry,
            initial_delay=rng.uniform(0, args.delay_loop),  # keepalived's warmup
        )
        for e in endpoints
    }
    vs = VirtualServerSpec(
        name="bench",
        real_servers=tuple(RealServerSpec(server=e, checkers=(spec_of[e],)) for e in endpoints),
    )
    monitor = HealthMonitor([vs])
    counter = [0]
    checks: dict[CheckerId, Checker] = {}
    for e in endpoints:
        cid = CheckerId(virtual_server="bench", server=e, index=0)
        inner: Checker
        if args.mode == "http":
            inner = HttpGetCheck(address=e.address, port=e.port, connect_timeout=args.timeout)
        else:
            inner = TcpCheck(address=e.address, port=e.port, connect_timeout=args.timeout)
        checks[cid] = Counting(inner, counter)
    watcher = Watcher()
    scheduler = HealthScheduler(monitor, checks, watcher)
    scheduler.start()
    try:
        await asyncio.sleep(args.delay_loop + args.warmup)  # every server checked at least once
        downs_before = watcher.downs
        checks_before, cpu_before, wall_before = counter[0], time.process_time(), loop.time()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu_before = servers.cpu_seconds()
        await asyncio.sleep(args.duration)
        cpu = time.process_time() - cpu_before
        wall = loop.time() - wall_before
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = servers.cpu_seconds() - server_cpu_before
        checks_done = counter[0] - checks_before
        false_downs = watcher.downs - downs_before

        bound = (
            args.delay_loop + (args.retry + 1) * args.timeout + args.retry * args.delay_before_retry
        )
        detections: dict[str, list[float]] = {}
        kill_modes = ["kill", "hang"] if args.mode == "http" else ["kill"]
        victims = rng.sample(endpoints, args.kills * len(kill_modes))
        for index, victim in enumerate(victims):
            how = kill_modes[index % len(kill_modes)]
            down = watcher.expect(ServerDown, victim)
            await servers.command(how, victim.port)
            broken_at = loop.time()
            detected_at = await asyncio.wait_for(down, bound * 3)
            detections.setdefault(how, []).append(detected_at - broken_at)
            # Spread the breaks over the check cycle.
            await asyncio.sleep(rng.uniform(0, args.delay_loop))
    finally:
        await scheduler.stop()

    return {
        "mode": args.mode,
        "servers": args.servers,
        "delay_loop": args.delay_loop,
        "retry": args.retry,
        "delay_before_retry": args.delay_before_retry,
        "connect_timeout": args.timeout,
        "duration_s": round(wall, 2),
        "checks_per_s": round(checks_done / wall, 1),
        "cpu_share_of_one_core": round(cpu / wall, 4),
        "user_s": round(usage_after.ru_utime - usage_before.ru_utime, 3),
        "system_s": round(usage_after.ru_stime - usage_before.ru_stime, 3),
        "server_process_cpu_share": round(server_cpu / wall, 4),
        "false_downs": false_downs,
        "detection_bound_s": bound,
        "detection_s": {
            how: {
                "n": len(times),
                "mean": round(statistics.fmean(times), 3),
                "max": round(max(times), 3),
                "within_bound": all(t <= bound + TIMER_ALLOWANCE for t in times),
            }
            for how, times in detections.items()
        },
        "keepalived": "not run: its healthcheck child exits FATAL without IPVS on this kernel",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--mode", choices=("tcp", "http"), default="http")
    parser.add_argument("--duration", type=float, default=30.0, help="CPU measurement, seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--delay-loop", type=float, default=1.0)
    parser.add_argument("--retry", type=int, default=1)
    parser.add_argument("--delay-before-retry", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=1.0, help="connect_timeout, seconds")
    parser.add_argument("--kills", type=int, default=5, help="servers broken per break mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, args.mode))
        return 0
    result = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"health checks: {result['servers']} real servers, {args.mode.upper()}, "
        f"delay_loop {args.delay_loop:g}s, retry {args.retry}, "
        f"delay_before_retry {args.delay_before_retry:g}s, connect_timeout {args.timeout:g}s"
    )
    print(f"  checks/s             {result['checks_per_s']}")
    print(
        f"  CPU share of 1 core  {100 * result['cpu_share_of_one_core']:.1f} %  "  # type: ignore[operator]
        f"(user {result['user_s']} s, system {result['system_s']} s "
        f"over {result['duration_s']} s)"
    )
    print(
        f"  (the {result['servers']} listeners' process: "
        f"{100 * result['server_process_cpu_share']:.1f} % of a core)"  # type: ignore[operator]
    )
    print(f"  false downs          {result['false_downs']}")
    print(
        f"  detection bound      {result['detection_bound_s']:g} s "
        f"(+ {TIMER_ALLOWANCE * 1000:g} ms for the event loop's timer lateness)"
    )
    for how, figures in result["detection_s"].items():  # type: ignore[attr-defined]
        print(
            f"  detection ({how:4})     mean {figures['mean']} s, max {figures['max']} s "
            f"over {figures['n']}, within bound: {figures['within_bound']}"
        )
    print(f"  keepalived           {result['keepalived']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
