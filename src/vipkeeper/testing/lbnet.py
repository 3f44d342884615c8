"""A load-balancing lab on the namespace `Lab`: client, directors, real servers, two bridges.

Needs root and iproute2. It is a `netns.Lab` (one prefix, one teardown that kills every process
it started and deletes every namespace, even when a test fails half way through building) with
a fixed topology, addressed by role:

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
`vipkeeper run` there (`daemons.start_vipkeeper`); `hard_fail(director)` pulls its plug
(`Lab.hard_fail`) and `restore(director)` gives it its links back; `director_config(...)`
writes the keepalived.conf both directors read.
Must never: sleep for a condition it can poll.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vipkeeper.testing.daemons import Vipkeeper, start_vipkeeper
from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import poll

VIP = "172.16.9.1"
CLIENT_IP = "172.16.0.100"
DIRECTORS = {"d1": ("172.16.0.53", "192.168.0.53"), "d2": ("172.16.0.57", "192.168.0.57")}
REAL_SERVERS = {"rs1": ("172.16.0.54", "192.168.0.54"), "rs2": ("172.16.0.55", "192.168.0.55")}
SORRY_SERVER = ("172.16.0.56", "192.168.0.56")
FRONTEND = "brfe"
SERVERS = "brsrv"


class LbNet:
    def __init__(
        self,
        workdir: Path,
        *,
        nat: bool = False,
        server_ports: dict[str, int] | None = None,
        sorry: bool = False,
    ):
        self.workdir = workdir
        self.nat = nat
        self.servers = dict(REAL_SERVERS)
        if sorry:
            self.servers["sorry"] = SORRY_SERVER
        self.server_ports = {name: 80 for name in self.servers} | (server_ports or {})
        self.http: dict[str, subprocess.Popen[bytes]] = {}
        self.lab: Lab | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LbNet:
        self.lab = Lab(workdir=self.workdir)
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.lab is not None:
            self.lab.teardown()

    # ---- helpers -----------------------------------------------------------------------------

    @property
    def net(self) -> Lab:
        if self.lab is None:
            raise RuntimeError("LbNet is built by `with LbNet(...) as net`")
        return self.lab

    def host(self, role: str) -> Host:
        """A role's namespace; "sw" is the switch (the bridges' namespace)."""
        return self.net.bridge if role == "sw" else self.net.hosts[role]

    def port(self, role: str, device: str) -> str:
        """The switch port `role`'s `device` hangs off."""
        return self.net.ports[role][device]

    def ns(self, role: str) -> str:
        return self.host(role).ns

    def run(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        return self.net.run(self.host(role), *argv, input=stdin, check=check, timeout=60).stdout

    def popen(self, role: str, *argv: str) -> subprocess.Popen[bytes]:
        """A process in `role`'s namespace, output discarded; killed at teardown."""
        return self.net.popen(
            self.host(role), *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

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

    def counter(self, role: str, family: str, table: str, name: str) -> int:
        """Packets counted by the named counter object `name`."""
        out = json.loads(self.run(role, "nft", "-j", "list", "counter", family, table, name))
        for item in out["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise LookupError(name)

    def count_ingress(
        self, role: str, device: str, rules: dict[str, str], table: str = "probe"
    ) -> None:
        """A netdev ingress table on `role`'s `device` with one named counter per rule
        (name -> nft match); `counter(role, "netdev", table, name)` reads it."""
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

    def count_dr_paths(self, directors: Sequence[str] = tuple(DIRECTORS)) -> None:
        """Counters on the DR paths: "to_vip" (table "probe") on each real server's srv0,
        "replies" from the VIP on each director's fe0 and srv0 (tables "probe_fe0",
        "probe_srv0"), and "from_<server>" on the client (replies from the VIP with that real
        server's MAC, table "probe")."""
        for name in REAL_SERVERS:
            self.count_ingress(name, "srv0", {"to_vip": f"ip daddr {VIP} tcp dport 80"})
        for director in directors:
            for device in ("fe0", "srv0"):
                self.count_ingress(
                    director, device, {"replies": f"ip saddr {VIP}"}, f"probe_{device}"
                )
        self.count_ingress("cli", "eth0", {
            f"from_{name}": f"ether saddr {self.mac(name, 'fe0')} ip saddr {VIP} tcp sport 80"
            for name in REAL_SERVERS
        })  # fmt: skip

    def chain_packets(self, role: str, family: str, table: str, chain: str) -> int:
        """Sum of the anonymous counters in one chain's rules."""
        out = json.loads(self.run(role, "nft", "-j", "list", "chain", family, table, chain))
        total = 0
        for item in out["nftables"]:
            for expression in item.get("rule", {}).get("expr", []):
                if "counter" in expression:
                    total += int(expression["counter"]["packets"])
        return total

    # ---- topology ----------------------------------------------------------------------------

    def build(self) -> None:
        lab = self.net
        lab.add_bridge(FRONTEND)
        lab.add_bridge(SERVERS)
        lab.add_host("cli", [f"{CLIENT_IP}/16"], bridge=FRONTEND)
        for name, (front, back) in DIRECTORS.items():
            host = lab.add_host(name, [f"{front}/16"], ifname="fe0", bridge=FRONTEND)
            lab.add_link(host, "srv0", SERVERS, [f"{back}/24"])
            self.sysctl(name, **{"net.ipv4.ip_forward": "1"})
        for name, (front, back) in self.servers.items():
            host = lab.add_host(name, [f"{back}/24"], ifname="srv0", bridge=SERVERS)
            if self.nat:
                self.run(name, "ip", "route", "add", "default", "via", DIRECTORS["d1"][1])
            else:
                lab.add_link(host, "fe0", FRONTEND, [f"{front}/16"])
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
        self.http[name] = self.popen(
            name, sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
            "--directory", str(root), "--protocol", "HTTP/1.1", str(self.server_ports[name]),
        )  # fmt: skip

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

    def _wait_http(self, name: str) -> None:
        port = self.server_ports[name]
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
        poll(15, lambda: self.run(name, sys.executable, "-c", code), interval=0.1)

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
        command: Sequence[str] | None = None,
        owner: int | None = None,
        control_socket: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> Vipkeeper:
        """`daemons.start_vipkeeper` in `director`."""
        return start_vipkeeper(
            self.net,
            self.host(director),
            config,
            command=command,
            owner=owner,
            control_socket=control_socket,
            extra_args=extra_args,
        )

    def hard_fail(self, director: str) -> float:
        """Pull the plug on a director (`Lab.hard_fail`): nothing in it gets to say goodbye,
        the peer must notice the silence, and the VIP still configured on the dead director's
        fe0 can never answer ARP again."""
        return self.net.hard_fail(self.host(director))

    def restore(self, director: str) -> None:
        """Undo hard_fail's cut: the director's links come back (nothing runs in it)."""
        self.net.restore(self.host(director))

    def client(self) -> Client:
        process = self.net.popen(
            self.host("cli"), sys.executable, "-u", "-c", CLIENT_SCRIPT, VIP,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        return Client(process)


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
