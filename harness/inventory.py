"""The lab as an Ansible inventory: hosts the harness reaches with testinfra (`ansible://`).

Owns: reading an inventory (`ansible-inventory --list`), the roles its groups give
(`directors`, `realservers`, `clients`: GROUP_ROLES), the topology found on the hosts
themselves (each director's deployed keepalived.conf read by vipkeeper's own parser; addresses,
interfaces and MACs from `ip -j addr`), and the node operations faults are made of, expressed for
a host: the node failing as a whole (vipkeeper killed with SIGKILL and held down, its frontend
link down) and coming back, the daemon frozen (SIGSTOP) and thawed, a systemd unit stopped and
started.  It offers the surface of `harness.lab.Lab` that probes, faults and `restore` use, so
the lab tests run unchanged over it.  Must never: change a host unless faults were allowed
(`allow_faults`, the `--allow-faults` option of tests/lab); cut the harness off a host (a fault
that would take down the link the harness reaches the host over is refused); send lab traffic
from this machine (probes run on the inventory's client host, as in the Compose lab).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.lab import ExecResult, LabError
from harness.topology import (
    DIRECTOR_CONF,
    ROOT,
    Director,
    Node,
    Topology,
    TopologyError,
    read_config,
    topology_of,
    virtual_service,
)

# Inventory group -> the role its hosts play in the lab.
GROUP_ROLES: Mapping[str, str] = {
    "directors": "director",
    "realservers": "realserver",
    "clients": "client",
}
# The network names the harness gives an inventory's two networks (a topology's keys only): the
# one the client, the VIP and VRRP are on, and the one the directors reach the real servers on.
FRONT_NET = "frontend"
SERVERS_NET = "servers"
DAEMON_UNIT = "vipkeeper"  # the director's systemd unit (packaging/vipkeeper.service)
HTTPD_UNIT = "apache2"  # the real servers' web server unit (Debian's apache2 package)
# Host variables of deploy/'s roles the harness reads, when the inventory sets them: where the
# director role puts keepalived.conf (default DIRECTOR_CONF, the role's default too).
CONFIG_FILE_VAR = "vipkeeper_config_file"
SSH_CONTROL_DIR = Path(tempfile.gettempdir()) / f"vipkeeper-harness-ssh-{os.getuid()}"
# A session that stops hearing from the host ends after ServerAliveInterval x CountMax seconds
# instead of hanging the test.
SSH_OPTIONS = "-o ServerAliveInterval=2 -o ServerAliveCountMax=3"
SSH_FAILED = 255  # ssh's own exit code when it could not run the command
# Where a failed director keeps its frontend's default route until it comes back (on the host:
# `make heal` or a later test run may undo the fault from another process).
SAVED_ROUTE = "/run/vipkeeper-harness/default-route"


class InventoryError(LabError):
    """The inventory cannot be read, or does not describe a usable lab."""


class FaultsNotAllowed(InventoryError):
    """A change to the hosts was asked for without `allow_faults`."""


# --- the inventory ------------------------------------------------------------------------------
def read_inventory(path: Path) -> dict[str, Any]:
    """`ansible-inventory --list` of `path` (the one next to this Python first, then PATH)."""
    local = Path(sys.executable).parent / "ansible-inventory"
    command = str(local) if local.exists() else "ansible-inventory"
    try:
        result = subprocess.run(
            [command, "-i", str(path), "--list"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "ANSIBLE_VERBOSITY": "0"},
        )
    except FileNotFoundError:
        raise InventoryError(
            "ansible-inventory not found: install the `deploy` extra (ansible-core)"
        ) from None
    if result.returncode != 0:
        raise InventoryError(f"ansible-inventory -i {path}: {result.stderr.strip()}")
    doc = json.loads(result.stdout)
    return doc if isinstance(doc, dict) else {}


def group_hosts(inventory: Mapping[str, Any], group: str) -> list[str]:
    """The hosts of `group` and of its child groups, in inventory order, each once."""
    entry = inventory.get(group) or {}
    found = list(entry.get("hosts") or [])
    for child in entry.get("children") or []:
        found += group_hosts(inventory, child)
    return list(dict.fromkeys(found))


def roles_of(inventory: Mapping[str, Any]) -> dict[str, str]:
    """host -> role, from the inventory's groups (GROUP_ROLES); a host in two role groups, or
    an inventory without directors, real servers or exactly one client, is refused."""
    roles: dict[str, str] = {}
    for group, role in GROUP_ROLES.items():
        for host in group_hosts(inventory, group):
            if roles.setdefault(host, role) != role:
                raise InventoryError(f"host {host} is in two role groups ({roles[host]}, {role})")
    counts = {role: sum(1 for r in roles.values() if r == role) for role in GROUP_ROLES.values()}
    if counts["director"] < 1 or counts["realserver"] < 1 or counts["client"] != 1:
        raise InventoryError(
            f"the inventory needs groups {', '.join(GROUP_ROLES)} with at least one director, "
            f"one real server and exactly one client; found {counts}"
        )
    return roles


# --- the topology, found on the hosts -----------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Interface:
    name: str
    mac: str
    networks: tuple[ipaddress.IPv4Interface, ...]  # each IPv4 address with its prefix


def parse_ip_addr(output: str) -> dict[str, Interface]:
    """`ip -j addr show` -> interface name -> Interface (its MAC, its IPv4 addresses)."""
    found: dict[str, Interface] = {}
    for link in json.loads(output or "[]"):
        name = link.get("ifname")
        if not name:
            continue
        networks = tuple(
            ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            for a in link.get("addr_info") or []
            if a.get("family", "inet") == "inet" and "local" in a
        )
        found[name] = Interface(
            name=name, mac=str(link.get("address", "")).lower(), networks=networks
        )
    return found


def _on_network(
    interfaces: Mapping[str, Interface], network: ipaddress.IPv4Network, vip: str
) -> tuple[str, str] | None:
    """(interface, address) of the host on `network`, the VIP not counted."""
    for iface in interfaces.values():
        for net in iface.networks:
            if str(net.ip) != vip and net.ip in network:
                return iface.name, str(net.ip)
    return None


Run = Callable[[str, str], str]  # (host, shell command) -> its standard output


def discover(
    name: str,
    roles: Mapping[str, str],
    run: Run,
    *,
    config_paths: Mapping[str, str] | None = None,
) -> tuple[Topology, dict[str, dict[str, Interface]]]:
    """The lab's topology as the hosts show it: every director's keepalived.conf (read over
    `run` from `config_paths[host]`, by default DIRECTOR_CONF; parsed by vipkeeper), and every
    host's interfaces.  Also returns each host's interfaces (for MACs).  `name` names the
    inventory in the topology and in errors."""
    paths = {h: (config_paths or {}).get(h, DIRECTOR_CONF) for h, r in roles.items()}
    directors = [h for h, r in roles.items() if r == "director"]
    interfaces = {host: parse_ip_addr(run(host, "ip -j addr show")) for host in roles}
    configs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vipkeeper-inventory-") as tmp:
        for host in directors:
            local = Path(tmp) / f"{host}.conf"
            local.write_text(run(host, f"cat {shlex.quote(paths[host])}"))
            configs[host] = read_config(local, f"{host}:{paths[host]}")
    first = directors[0]
    service = virtual_service(configs[first], f"{first}:{paths[first]}")
    # The frontend is the network of the first director's VRRP interface; the servers network
    # the one its first real server is on.
    front_if = configs[first].vrrp_instances[0].interface
    if front_if is None or front_if not in interfaces[first]:
        raise TopologyError(f"{first}: its VRRP interface {front_if!r} is not on the host")
    front_nets = [
        n.network for n in interfaces[first][front_if].networks if str(n.ip) != service.vip
    ]
    if not front_nets:
        raise TopologyError(f"{first}: {front_if} has no address besides the VIP")
    first_rs = ipaddress.IPv4Address(service.real_servers[0])
    servers_nets = [
        n.network
        for iface in interfaces[first].values()
        for n in iface.networks
        if first_rs in n.network and iface.name != "lo"
    ]
    if not servers_nets:
        raise TopologyError(f"{first}: no interface on the network of real server {first_rs}")
    networks = {FRONT_NET: front_nets[0], SERVERS_NET: servers_nets[0]}

    nodes: dict[str, Node] = {}
    for host, role in roles.items():
        addresses: dict[str, str] = {}
        ifnames: dict[str, str] = {}
        for net_name, network in networks.items():
            found = _on_network(interfaces[host], network, service.vip)
            if found is not None:
                ifnames[net_name], addresses[net_name] = found
        node = Node(name=host, role=role, addresses=addresses, interfaces=ifnames)
        if role == "director":
            instance = configs[host].vrrp_instances[0]
            director = Director.running(
                node,
                instance,
                config_path=Path(paths[host]),
                config_env=None,
                default_config=paths[host],
            )
            if director.interfaces.get(FRONT_NET) != instance.interface:
                raise TopologyError(
                    f"{host}: VRRP runs on {instance.interface}, but its address on "
                    f"{networks[FRONT_NET]} is on {director.interfaces.get(FRONT_NET)}"
                )
            nodes[host] = director
        else:
            nodes[host] = node
    (client,) = (n for n in nodes.values() if n.role == "client")
    if FRONT_NET not in client.addresses:
        raise TopologyError(f"client {client.name}: no address on {networks[FRONT_NET]}")
    topology = topology_of(
        service,
        nodes,
        project=name,
        root=ROOT,
        compose_file=ROOT / "compose.yaml",
        front_net=FRONT_NET,
        servers_net=SERVERS_NET,
        client=client,
        holders="host of group realservers",
    )
    return topology, interfaces


# --- the hosts ----------------------------------------------------------------------------------
def testinfra_host(inventory: Path, name: str) -> Any:
    """A testinfra host for an inventory host (`ansible://NAME?ansible_inventory=...`).

    testinfra maps an SSH host of the inventory to its `ssh` backend (user, port, key and
    become taken from the inventory); that backend asks for ControlMaster but names no
    ControlPath unless ansible.cfg does, so every command would open a new SSH connection.  A
    control path of our own makes each command one session over a kept connection (the VIP
    watcher polls several times a second)."""
    import testinfra
    from testinfra.backend.ssh import SshBackend
    from testinfra.utils.ansible_runner import AnsibleRunner

    host = testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")
    inner = AnsibleRunner.get_runner(str(inventory)).get_host(name)
    if inner is not None and isinstance(inner.backend, SshBackend):
        backend = inner.backend
        SSH_CONTROL_DIR.mkdir(mode=0o700, exist_ok=True)
        if not backend.controlpath:
            backend.controlpath = f"{SSH_CONTROL_DIR}/%%C"  # %% : testinfra %-formats it
        backend.ssh_extra_args = f"{backend.ssh_extra_args or ''} {SSH_OPTIONS}".strip()
    return host


def connection_address(inventory: Mapping[str, Any], name: str) -> str | None:
    """The address the harness reaches `name` at (its ansible_host, resolved), if any."""
    hostvars = (inventory.get("_meta") or {}).get("hostvars", {}).get(name, {})
    if hostvars.get("ansible_connection", "ssh") not in ("ssh", "smart", "paramiko_ssh"):
        return None
    target = str(hostvars.get("ansible_host", name))
    try:
        return socket.gethostbyname(target)
    except OSError:
        return None


class InventoryLab:
    """An inventory's hosts, by inventory name, with the node operations of `harness.lab.Lab`.

    `state(node)` is "running" for a reachable host whose vipkeeper (directors) is active,
    "exited" for a director whose daemon is not, "paused" for one whose daemon is frozen, and
    "unreachable" when the harness cannot reach the host."""

    kind: ClassVar[str] = "inventory"

    def __init__(self, inventory: Path, *, allow_faults: bool = False) -> None:
        self.inventory_path = inventory
        self.allow_faults = allow_faults
        self.inventory = read_inventory(inventory)
        self.roles = roles_of(self.inventory)
        self.hosts = {name: testinfra_host(inventory, name) for name in self.roles}
        hostvars = (self.inventory.get("_meta") or {}).get("hostvars", {})
        config_paths = {
            h: str(hostvars[h][CONFIG_FILE_VAR])
            for h in self.roles
            if CONFIG_FILE_VAR in hostvars.get(h, {})
        }
        self.topology, self._interfaces = discover(
            inventory.name, self.roles, self._stdout, config_paths=config_paths
        )
        self.project = self.topology.project

    def _stdout(self, node: str, command: str) -> str:
        code, stdout, stderr = self._run(node, command, timeout=30)
        if code != 0:
            raise InventoryError(f"{node}: {command!r} exited {code}: {stderr}{stdout}")
        return stdout

    # --- commands -------------------------------------------------------------------------------
    def _run(
        self, node: str, cmd: list[str] | str, *, timeout: float | None
    ) -> tuple[int, str, str]:
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if timeout is not None:
            argv = ["timeout", "-s", "KILL", f"{timeout:g}", *argv]
        try:
            out = self._host(node).run(shlex.join(argv))
        except RuntimeError as exc:  # testinfra's ssh backend: ssh itself failed (exit 255)
            return SSH_FAILED, "", f"ssh to {node} failed: {exc}"
        return int(out.rc), out.stdout, out.stderr

    def exec(
        self, node: str, cmd: list[str] | str, *, timeout: float | None = 30, check: bool = False
    ) -> ExecResult:
        """Run `cmd` on the host (as the inventory's user, with become when it says so); the
        output is its standard error, then its standard output.

        `timeout` is enforced on the host by coreutils `timeout` (exit code 124); an SSH
        failure is exit code 255 with ssh's message as the output."""
        code, stdout, stderr = self._run(node, cmd, timeout=timeout)
        result = ExecResult(exit_code=code, output=stderr + stdout)
        if check and not result.ok:
            raise InventoryError(f"{node}: {cmd!r} exited {result.exit_code}: {result.output}")
        return result

    def exec_detached(self, node: str, cmd: list[str]) -> None:
        """Start `cmd` on the host in its own session, detached from the SSH session."""
        inner = shlex.join(cmd)
        self.exec(node, f"setsid -f sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1")

    def _host(self, node: str) -> Any:
        try:
            return self.hosts[node]
        except KeyError:
            raise InventoryError(f"no host {node!r} in {self.inventory_path}") from None

    def testinfra_host(self, node: str) -> Any:
        return self._host(node)

    def put_file(self, node: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write `data` to `path` on the host (its directory must exist)."""
        encoded = base64.b64encode(data).decode()
        script = (
            f"printf %s {encoded} | base64 -d >{shlex.quote(path)} && "
            f"chmod {mode:o} {shlex.quote(path)}"
        )
        self.exec(node, script, check=True)

    def netns_run(self, node: str, script: str, *, writable_sysctls: bool = False) -> ExecResult:
        """On a host the harness's fixed scripts run in the host itself (its network namespace,
        a writable /proc/sys for root)."""
        return self.exec(node, script, timeout=60)

    # --- discovery ------------------------------------------------------------------------------
    def state(self, node: str) -> str:
        if self.topology.nodes[node].role != "director":
            return "running" if self.exec(node, "true", timeout=10).ok else "unreachable"
        code, stdout, _ = self._run(
            node,
            f"systemctl is-active {DAEMON_UNIT}; "
            f"ps -o stat= -p $(systemctl show -p MainPID --value {DAEMON_UNIT})",
            timeout=10,
        )
        if code == SSH_FAILED:
            return "unreachable"
        words = stdout.split()
        if not words or words[0] not in ("active", "activating", "reloading"):
            return "exited"
        return "paused" if len(words) > 1 and words[1].startswith("T") else "running"

    def is_running(self, services: tuple[str, ...] | None = None) -> bool:
        return all(self.state(s) == "running" for s in services or tuple(self.roles))

    def director_daemon(self) -> str:
        return "vipkeeper"

    def logs(self, node: str, *, since: float | None = None) -> str:
        """The director's vipkeeper journal (other hosts: the whole journal) from `since`."""
        unit = f"-u {DAEMON_UNIT}" if self.topology.nodes[node].role == "director" else ""
        since_arg = f"--since=@{int(since)}" if since is not None else ""
        return self.exec(node, f"journalctl --no-pager -o cat {unit} {since_arg}").output

    def mac(self, node: str, network: str) -> str | None:
        ifname = self.topology.nodes[node].interfaces.get(network)
        iface = self._interfaces[node].get(ifname or "")
        return iface.mac if iface else None

    def service_of_mac(self, mac: str) -> str | None:
        for node, interfaces in self._interfaces.items():
            if any(i.mac == mac.lower() for i in interfaces.values()):
                return node
        return None

    # --- host operations (the raw material of faults) -------------------------------------------
    def _changing(self, node: str, what: str) -> None:
        if not self.allow_faults:
            raise FaultsNotAllowed(
                f"{what} on {node}: this changes the host; faults need --allow-faults"
            )

    def _front_link_guard(self, node: str) -> str:
        """The node's frontend interface, after checking the harness does not reach the host
        over it (taking it down would cut the harness off and leave the fault in place)."""
        iface = self.topology.front_if(node)
        reached_at = connection_address(self.inventory, node)
        found = self._interfaces[node].get(iface)
        addresses = {str(n.ip) for n in found.networks} if found else set()
        if reached_at is None or reached_at in addresses:
            raise InventoryError(
                f"{node} is reached at {reached_at or 'an unknown address'}, over its frontend "
                f"interface {iface}: taking that link down would cut the harness off (give the "
                f"host an ansible_host on another network)"
            )
        return iface

    def link_guard(self, node: str) -> None:
        """Raise when the frontend link of `node` cannot be taken down safely."""
        self._front_link_guard(node)

    def kill(self, node: str, signal: str = "SIGKILL") -> None:
        """The director fails as a whole, as a power cut would leave it: its frontend link goes
        down (nothing more leaves or answers there, the VIP it held included), its daemon is
        killed with SIGKILL (no goodbye advert) and held down (`systemctl stop` cancels the
        unit's restart).  Only directors: on other hosts this would also stop the workload."""
        self._changing(node, "kill")
        if self.topology.nodes[node].role != "director":
            raise InventoryError(f"kill {node}: on an inventory only directors can be failed")
        iface = self._front_link_guard(node)
        saved = shlex.quote(SAVED_ROUTE)
        self.exec(
            node,
            f"mkdir -p $(dirname {saved}) && ip route show default dev {iface} >{saved} && "
            f"ip link set dev {iface} down && systemctl kill -s {signal} {DAEMON_UNIT}; "
            f"systemctl stop {DAEMON_UNIT}",
            check=True,
        )

    def start(self, node: str) -> None:
        """The failed director comes back as from a reboot: no virtual address left over (the
        kernel keeps a down link's addresses), its frontend link up with the default route it
        had, vipkeeper started (it answers on its control socket once started: Type=notify)."""
        self._changing(node, "start")
        topo = self.topology
        iface = topo.front_if(node)
        saved = shlex.quote(SAVED_ROUTE)
        self.exec(
            node,
            f"ip -o -4 addr show dev {iface} to {topo.vip}/32 | awk '{{print $4}}' | "
            f"xargs -r -I@ ip addr del @ dev {iface}; "
            f"ip link set dev {iface} up && "
            f"{{ [ ! -s {saved} ] || head -n1 {saved} | xargs -r ip route replace; }} && "
            f"rm -f {saved} && systemctl reset-failed {DAEMON_UNIT}; "
            f"systemctl start {DAEMON_UNIT}",
            timeout=60,
            check=True,
        )

    def stop(self, node: str, timeout: int = 5) -> None:
        """`systemctl stop vipkeeper`: a graceful stop (priority 0 advert, VIPs removed)."""
        self._changing(node, "stop")
        self.exec(node, ["systemctl", "stop", DAEMON_UNIT], timeout=timeout + 30, check=True)

    def pause(self, node: str) -> None:
        """vipkeeper frozen (SIGSTOP): the host's kernel still answers ARP for what it holds."""
        self._changing(node, "pause")
        self.exec(node, ["systemctl", "kill", "-s", "SIGSTOP", DAEMON_UNIT], check=True)

    def unpause(self, node: str) -> None:
        self._changing(node, "unpause")
        self.exec(node, ["systemctl", "kill", "-s", "SIGCONT", DAEMON_UNIT], check=True)

    def unit(self, node: str, unit: str, action: str) -> None:
        """`systemctl ACTION UNIT` on the host."""
        self._changing(node, f"systemctl {action} {unit}")
        self.exec(node, ["systemctl", action, unit], timeout=60, check=True)
