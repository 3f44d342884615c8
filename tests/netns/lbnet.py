"""A load-balancing lab in network namespaces: client, directors, real servers, two bridges.

Needs root and iproute2. Every namespace is `<prefix><role>` with a fresh `vklb` + 6 hex prefix;
`LbNet.close()` (also run by `with`) kills every process it started and deletes every namespace,
even when a test fails half way through building.

    frontend 172.16.0.0/16:  client .100, director fe0 .53 / .57, DR real servers fe0 .54 / .55
    servers 192.168.0.0/24:  director srv0 .53 / .57, real servers srv0 .54 / .55

DR real servers hold the VIP on `lo` with arp_ignore=1 / arp_announce=2 and answer the client
over their own frontend link. NAT real servers have no frontend link: their default route is the
first director. Each real server runs `python -m http.server` (HTTP/1.1, so keep-alive works)
serving `/whoami`, a file holding its name.

`Client` is a child process in the client namespace taking JSON commands on stdin, so a test
can hold keep-alive connections open across a change and use them again afterwards.

For the daemon-level tests: `LbNet(..., sorry=True)` adds a third server, `sorry`
(172.16.0.56 / 192.168.0.56), built like a real server; `stop_http` / `start_http` kill and
restart one server's HTTP service; `start_vipkeeper(director, config_text)` runs
`vipkeeper run -f CONF --log-format json` in a director with stderr to a file in the workdir
(`Vipkeeper.stop()` sends SIGTERM); `hard_fail(director)` kills every process in the director's
namespace and takes its links down, like pulling the plug; `director_config(...)` writes the
keepalived.conf both directors read.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed
from vipkeepers import DaemonProcess, poll

VIP = "172.16.9.1"
CLIENT_IP = "172.16.0.100"
DIRECTORS = {"d1": ("172.16.0.53", "192.168.0.53"), "d2": ("172.16.0.57", "192.168.0.57")}
REAL_SERVERS = {"rs1": ("172.16.0.54", "192.168.0.54"), "rs2": ("172.16.0.55", "192.168.0.55")}
SORRY_SERVER = ("172.16.0.56", "192.168.0.56")
VIPKEEPER = Path(sys.executable).parent / "vipkeeper"


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    name: str
    ns: str


class LbNet:
    def __init__(
        self,
        workdir: Path,
        *,
        nat: bool = False,
        server_ports: dict[str, int] | None = None,
        sorry: bool = False,
    ):
        self.prefix = f"vklb{secrets.token_hex(3)}"
        self.workdir = workdir
        self.nat = nat
        self.servers = dict(REAL_SERVERS)
        if sorry:
            self.servers["sorry"] = SORRY_SERVER
        self.server_ports = {name: 80 for name in self.servers} | (server_ports or {})
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.http: dict[str, subprocess.Popen[str]] = {}
        self.hosts: dict[str, Host] = {}

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LbNet:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        for ns in reversed(self.namespaces):
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], check=False, capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self.namespaces.clear()

    # ---- helpers -----------------------------------------------------------------------------

    def ns(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def run(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns(role), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{role}: {' '.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout

    def sysctl(self, role: str, **values: str) -> None:
        for key, value in values.items():
            path = Path("/proc/sys") / key.replace(".", "/").replace("__", ".")
            self.run(role, "sh", "-c", f"echo {value} > {path}")

    def mac(self, role: str, device: str) -> str:
        return str(
            json.loads(self.run(role, "ip", "-j", "link", "show", "dev", device))[0]["address"]
        )

    def nft(self, role: str, script: str) -> None:
        self.run(role, "nft", "-f", "-", stdin=script)

    def probe(self, role: str, device: str, rules: dict[str, str], table: str = "probe") -> None:
        """A netdev ingress table on `device` with one named counter per rule (`counter()`)."""
        counters = "\n".join(f"counter {name} {{}}" for name in rules)
        lines = "\n".join(f'{match} counter name "{name}"' for name, match in rules.items())
        self.nft(
            role,
            f"""table netdev {table} {{
              {counters}
              chain ingress {{
                type filter hook ingress device "{device}" priority -10; policy accept;
                {lines}
              }}
            }}""",
        )

    def counter(self, role: str, family: str, table: str, name: str) -> int:
        """Packets counted by the named counter object `name`."""
        out = json.loads(self.run(role, "nft", "-j", "list", "counter", family, table, name))
        for item in out["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise LookupError(name)

    def chain_packets(self, role: str, family: str, table: str, chain: str) -> int:
        """Sum of the anonymous counters in one chain's rules."""
        out = json.loads(self.run(role, "nft", "-j", "list", "chain", family, table, chain))
        total = 0
        for item in out["nftables"]:
            for expression in item.get("rule", {}).get("expr", []):
                if "counter" in expression:
                    total += int(expression["counter"]["packets"])
        return total

    def _add_ns(self, role: str) -> None:
        _ip("netns", "add", self.ns(role))
        self.namespaces.append(self.ns(role))
        self.run(role, "ip", "link", "set", "lo", "up")

    def _link(self, role: str, device: str, bridge: str, port: str) -> None:
        _ip(
            "-n",
            self.ns("sw"),
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            device,
            "netns",
            self.ns(role),
        )
        _ip("-n", self.ns("sw"), "link", "set", port, "master", bridge, "up")
        self.run(role, "ip", "link", "set", device, "up")

    # ---- topology ----------------------------------------------------------------------------

    def build(self) -> None:
        self._add_ns("sw")
        for bridge in ("brfe", "brsrv"):
            _ip("-n", self.ns("sw"), "link", "add", bridge, "type", "bridge", "stp_state", "0")
            _ip("-n", self.ns("sw"), "link", "set", bridge, "up")
        self._add_ns("cli")
        self._link("cli", "eth0", "brfe", "pcli")
        self.run("cli", "ip", "addr", "add", f"{CLIENT_IP}/16", "dev", "eth0")
        for name, (front, back) in DIRECTORS.items():
            self._add_ns(name)
            self._link(name, "fe0", "brfe", f"p{name}fe")
            self._link(name, "srv0", "brsrv", f"p{name}sv")
            self.run(name, "ip", "addr", "add", f"{front}/16", "dev", "fe0")
            self.run(name, "ip", "addr", "add", f"{back}/24", "dev", "srv0")
            self.sysctl(name, **{"net.ipv4.ip_forward": "1"})
        for name, (front, back) in self.servers.items():
            self._add_ns(name)
            self._link(name, "srv0", "brsrv", f"p{name}sv")
            self.run(name, "ip", "addr", "add", f"{back}/24", "dev", "srv0")
            if self.nat:
                self.run(name, "ip", "route", "add", "default", "via", DIRECTORS["d1"][1])
            else:
                self._link(name, "fe0", "brfe", f"p{name}fe")
                self.run(name, "ip", "addr", "add", f"{front}/16", "dev", "fe0")
                self.run(name, "ip", "addr", "add", f"{VIP}/32", "dev", "lo")
                # the VIP is on lo: never answer or announce it (the seed's vipset.sh)
                self.sysctl(
                    name,
                    **{
                        "net.ipv4.conf.all.arp_ignore": "1",
                        "net.ipv4.conf.all.arp_announce": "2",
                        "net.ipv4.conf.all.rp_filter": "0",
                        "net.ipv4.conf.srv0.rp_filter": "0",
                        "net.ipv4.conf.fe0.rp_filter": "0",
                    },
                )
            self._start_http(name)
        for name in self.servers:
            self._wait_http(name)

    def _start_http(self, name: str) -> None:
        root = self.workdir / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "whoami").write_text(name)
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns(name),
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                "0.0.0.0",
                "--directory",
                str(root),
                "--protocol",
                "HTTP/1.1",
                str(self.server_ports[name]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(process)
        self.http[name] = process

    def stop_http(self, name: str) -> None:
        """Kill one server's HTTP service: connects to it are refused from now on."""
        process = self.http.pop(name)
        process.kill()
        process.wait(timeout=10)

    def start_http(self, name: str) -> None:
        """(Re)start one server's HTTP service and return once it accepts connections."""
        if name in self.http and self.http[name].poll() is None:
            raise RuntimeError(f"{name}: http server already running")
        self._start_http(name)
        self._wait_http(name)

    @retry(
        stop=stop_after_delay(15),
        wait=wait_fixed(0.1),
        retry=retry_if_exception_type(RuntimeError),
        reraise=True,
    )
    def _wait_http(self, name: str) -> None:
        port = self.server_ports[name]
        self.run(
            name,
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()",
        )

    def add_vip(self, director: str) -> None:
        self.run(director, "ip", "addr", "add", f"{VIP}/32", "dev", "fe0")

    def move_vip(self, old: str, new: str) -> None:
        """VIP leaves `old` for `new`; the client forgets the old director's MAC and re-ARPs."""
        self.run(old, "ip", "addr", "del", f"{VIP}/32", "dev", "fe0")
        self.add_vip(new)
        self.run("cli", "ip", "neigh", "flush", "to", VIP)

    def start_vipkeeper(
        self,
        director: str,
        config: str,
        *,
        command: Sequence[str] = (str(VIPKEEPER),),
        owner: int | None = None,
        control_socket: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> Vipkeeper:
        """`vipkeeper run -f CONF --log-format json` in `director` with its own control socket
        (in the workdir unless given), stderr to a log file.

        `command` replaces `vipkeeper` (e.g. behind setpriv, to drop privileges); `owner` (a
        uid) gets the daemon's directory, where it writes its pidfile and control socket."""
        directory = self.workdir / f"vipkeeper-{director}-{secrets.token_hex(2)}"
        directory.mkdir(parents=True)
        if owner is not None:
            os.chown(directory, owner, owner)
        config_path = directory / "keepalived.conf"
        config_path.write_text(config)
        log_path = directory / "vipkeeper.log"
        socket_path = control_socket or directory / "vipkeeper.sock"
        argv = [
            "ip", "netns", "exec", self.ns(director), *command, "run",
            "-f", str(config_path), "--log-format", "json",
            "--pidfile", str(directory / "vipkeeper.pid"),
            "--control-socket", str(socket_path), *extra_args,
        ]  # fmt: skip
        with log_path.open("w") as log:
            process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True
            )
        self.processes.append(process)
        return Vipkeeper(director, process, config_path, log_path, socket_path)

    def namespace_pids(self, role: str) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.ns(role)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def hard_fail(self, director: str) -> None:
        """Pull the plug on a director: SIGKILL everything in it, then its links go down.

        Nothing gets to say goodbye (no priority-0 advert, no address removal): the peer must
        notice the silence. The links go down so the VIP still configured on the dead
        director's fe0 can never answer ARP again.
        """
        for pid in self.namespace_pids(director):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for device in ("fe0", "srv0"):
            self.run(director, "ip", "link", "set", device, "down")

    def client(self) -> Client:
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("cli"), sys.executable, "-u", "-c", CLIENT_SCRIPT, VIP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(process)
        return Client(process)


class Vipkeeper(DaemonProcess):
    """A `vipkeeper run` process in a director."""

    def __init__(
        self,
        director: str,
        process: subprocess.Popen[str],
        config_path: Path,
        log_path: Path,
        control_socket: Path,
    ) -> None:
        super().__init__(process, log_path)
        self.director = director
        self.config_path = config_path
        self.control_socket = control_socket

    def __repr__(self) -> str:
        return f"<vipkeeper in {self.director} pid {self.process.pid}>"

    def stop(self, timeout: float = 15.0) -> int:
        return super().stop(timeout)

    def states(self) -> list[str]:
        """The VRRP states entered, in order."""
        return [entry["new_state"] for entry in self.records() if "new_state" in entry]


def director_config(
    *,
    priority: int,
    real_servers: Sequence[str] = ("192.168.0.54", "192.168.0.55"),
    lb_kind: str = "DR",
    delay_loop: float = 1,
    connect_timeout: float = 1,
    retry: int = 1,
    delay_before_retry: float = 1,
    quorum: int | None = None,
    sorry_server: str | None = None,
    extra_vips: Sequence[str] = (),
    global_lines: Sequence[str] = (),
) -> str:
    """keepalived.conf for a director: VRRP instance on fe0 owning the VIP, one virtual server.

    The first real server is checked with HTTP_GET /whoami, the others with TCP_CHECK, so both
    checkers run against real services. `extra_vips` are more `virtual_ipaddress` lines (e.g. a
    server-side gateway address for NAT).
    """
    lines = ["global_defs {", "    router_id director", *(f"    {g}" for g in global_lines), "}"]
    lines += [
        "vrrp_instance VI_LB {",
        "    state BACKUP",
        "    interface fe0",
        "    virtual_router_id 61",
        f"    priority {priority}",
        "    advert_int 1",
        "    virtual_ipaddress {",
        f"        {VIP}/16 dev fe0",
        *(f"        {vip}" for vip in extra_vips),
        "    }",
        "}",
        f"virtual_server {VIP} 80 {{",
        f"    delay_loop {delay_loop:g}",
        "    lb_algo rr",
        f"    lb_kind {lb_kind}",
        "    protocol TCP",
    ]
    if quorum is not None:
        lines.append(f"    quorum {quorum}")
    if sorry_server is not None:
        lines.append(f"    sorry_server {sorry_server} 80")
    timing = [
        f"connect_timeout {connect_timeout:g}",
        f"retry {retry}",
        f"delay_before_retry {delay_before_retry:g}",
    ]
    for index, address in enumerate(real_servers):
        lines += [f"    real_server {address} 80 {{", "        weight 1"]
        if index == 0:
            lines += [
                "        HTTP_GET {",
                "            url {",
                "                path /whoami",
                "                status_code 200",
                "            }",
                *(f"            {t}" for t in timing),
                "        }",
            ]
        else:
            lines += ["        TCP_CHECK {", *(f"            {t}" for t in timing), "        }"]
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


class Client:
    """Talks to the client child: `get()` opens a new connection, `open()`/`get_on()` keep one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def _call(self, **command: Any) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("client process died")
        return dict(json.loads(line))

    def get(self, port: int = 80) -> str:
        """One request on a fresh connection; returns the body or raises."""
        reply = self._call(op="oneshot", port=port)
        if "error" in reply:
            raise ConnectionError(reply["error"])
        return str(reply["body"])

    def open(self, conn: int, port: int = 80) -> None:
        reply = self._call(op="open", id=conn, port=port)
        if "error" in reply:
            raise ConnectionError(reply["error"])

    def get_on(self, conn: int) -> str:
        reply = self._call(op="get", id=conn)
        if "error" in reply:
            raise ConnectionError(reply["error"])
        return str(reply["body"])

    def start_session(self, conn: int, *, interval: float, timeout: float = 30.0) -> str:
        """Open keep-alive connection `conn` and keep sending a request every `interval`
        seconds in the background (each waits up to `timeout`); returns the first answer."""
        reply = self._call(op="session_start", id=conn, interval=interval, timeout=timeout)
        if "error" in reply:
            raise ConnectionError(reply["error"])
        return str(reply["body"])

    def stop_session(self, conn: int) -> Session:
        """Stop the background requests of `conn`; what every one of them got."""
        reply = self._call(op="session_stop", id=conn)
        return Session(
            bodies=[str(body) for body in reply["bodies"]],
            errors=[str(error) for error in reply["errors"]],
            max_gap=float(reply["max_gap"]),
        )

    def session_count(self, conn: int) -> int:
        """Answers `conn`'s background requests got so far."""
        return int(self._call(op="session_count", id=conn)["count"])


@dataclass(frozen=True)
class Session:
    """A background keep-alive session: the body of every answer, in order, and any error
    (the session stops at the first one); `max_gap` is the longest time between two answers."""

    bodies: list[str]
    errors: list[str]
    max_gap: float


def serving(client: Client, expected: set[str], within: float, requests: int = 30) -> None:
    """Wait until `requests` fresh connections in a row all succeed and together reach exactly
    the `expected` servers."""

    def check() -> None:
        seen = set()
        for _ in range(requests):
            try:
                seen.add(client.get())
            except ConnectionError as error:
                raise AssertionError(f"request failed: {error}") from error
        assert seen == expected, f"served by {seen}, want {expected}"

    poll(within, check)


CLIENT_SCRIPT = r"""
import json, socket, sys, threading, time
vip = sys.argv[1]
conns = {}
sessions = {}

class Session(threading.Thread):
    def __init__(self, sock, interval):
        super().__init__(daemon=True)
        self.sock, self.interval = sock, interval
        self.stopping = threading.Event()
        self.bodies, self.errors, self.max_gap = [], [], 0.0

    def run(self):
        last = time.monotonic()
        while not self.stopping.wait(self.interval):
            try:
                self.bodies.append(request(self.sock))
            except Exception as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                return
            now = time.monotonic()
            self.max_gap, last = max(self.max_gap, now - last), now

def request(sock):
    sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: vip\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer mid-body")
        body += chunk
    status = head.split(b"\r\n")[0].decode()
    if " 200 " not in status:
        raise ConnectionError(status)
    return body[:length].decode()

for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["op"] == "oneshot":
            with socket.create_connection((vip, cmd["port"]), timeout=3) as s:
                out = {"body": request(s)}
        elif cmd["op"] == "open":
            conns[cmd["id"]] = socket.create_connection((vip, cmd["port"]), timeout=3)
            out = {"ok": True}
        elif cmd["op"] == "get":
            out = {"body": request(conns[cmd["id"]])}
        elif cmd["op"] == "session_start":
            sock = socket.create_connection((vip, 80), timeout=cmd["timeout"])
            first = request(sock)
            session = sessions[cmd["id"]] = Session(sock, cmd["interval"])
            session.start()
            out = {"body": first}
        elif cmd["op"] == "session_count":
            out = {"count": len(sessions[cmd["id"]].bodies)}
        elif cmd["op"] == "session_stop":
            session = sessions.pop(cmd["id"])
            session.stopping.set()
            session.join()
            session.sock.close()
            out = {"bodies": session.bodies, "errors": session.errors,
                   "max_gap": session.max_gap}
        else:
            out = {"error": "unknown op"}
    except Exception as error:
        out = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(out), flush=True)
"""
