"""The lab as one object, read from compose.yaml and the keepalived.conf each director mounts.

Owns: which services exist and what they are (director, real server, client: from a
`vipkeeper.role` label or else the image name `vipkeeper/<role>:...`), their networks,
addresses and interface names (Docker names interfaces by attach order, highest `priority:`
first), the VIP and its port, and each director's VRRP settings and the real servers' health
check timing as vipkeeper's own configuration parser reads them; a director's
Master_Down_Interval (the tests' bound) is the core's `timing` for its settings.  Must never:
talk to Docker or the network; keep a second copy of a fact that compose.yaml or
keepalived.conf states.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from vipkeeper.config import load_config
from vipkeeper.core import timing
from vipkeeper.paths import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]  # the repository: compose.yaml and lab/ live here
COMPOSE_FILE = ROOT / "compose.yaml"
ROLES = ("director", "realserver", "client", "prometheus")
ROLE_LABEL = "vipkeeper.role"
DIRECTOR_CONF = DEFAULT_CONFIG  # a director reads the daemon's default configuration file

# Added to protocol bounds in the lab tests: the daemon's reaction (a netlink write, an nft
# transaction) plus the harness seeing it (a `docker exec` poll every 0.1 s takes ~0.1-0.5 s on a
# busy 2-core machine).
REACTION_MARGIN = 2.0


# The lab's Prometheus (the `prometheus` role in compose.yaml; lab/prometheus/prometheus.yml):
# the port its HTTP API answers on, and how often it scrapes the directors.
PROMETHEUS_PORT = 9090
SCRAPE_INTERVAL = 1.0


class TopologyError(ValueError):
    """compose.yaml or a director's configuration does not describe a usable lab."""


@dataclass(frozen=True, kw_only=True)
class Node:
    name: str  # the Compose service
    role: str  # one of ROLES
    addresses: Mapping[str, str]  # network -> IPv4 address
    interfaces: Mapping[str, str]  # network -> interface name inside the container


@dataclass(frozen=True, kw_only=True)
class Director(Node):
    config_path: Path  # the keepalived.conf it mounts, on the host
    config_env: str | None  # the variable compose.yaml lets name another file (LAB_DIR1_CONF)
    default_config: str  # compose.yaml's default for that variable, as written
    instance: str  # its VRRP instance
    vrid: int
    priority: int
    version: int
    advert_int: float
    preempt: bool

    @classmethod
    def running(
        cls,
        node: Node,
        instance: Any,
        *,
        config_path: Path,
        config_env: str | None,
        default_config: str,
    ) -> Director:
        """`node` as a director whose configuration's first vrrp_instance is `instance`."""
        return cls(
            **{f.name: getattr(node, f.name) for f in fields(Node)},
            config_path=config_path,
            config_env=config_env,
            default_config=default_config,
            **vrrp_settings(instance),
        )

    @property
    def master_down_interval(self) -> float:
        return timing.master_down_interval(
            version=self.version, priority=self.priority, master_adver_interval=self.advert_int
        )

    def variant_config(self, variant: str) -> str:
        """A variant of the default file next to it: keepalived.<variant>.conf, written as
        compose.yaml needs a bind mount's source (a relative one starts with "./", or Compose
        takes it for a named volume)."""
        path = Path(self.default_config)
        variant_path = str(path.with_name(f"{path.stem}.{variant}{path.suffix}"))
        if path.is_absolute() or variant_path.startswith("."):
            return variant_path
        return f"./{variant_path}"


@dataclass(frozen=True, kw_only=True)
class HealthCheck:
    """The HTTP_GET checker timing the directors apply to every real server."""

    delay_loop: float
    connect_timeout: float
    retry: int
    delay_before_retry: float

    def down_bound(self) -> float:
        """Longest time from a real server failing to its last check failing (keepalived's
        checker semantics): the failure starts just after a good check, so the next check comes
        one delay_loop later; it and each of its `retry` retries may take connect_timeout, with
        delay_before_retry between them."""
        return (
            self.delay_loop
            + (self.retry + 1) * self.connect_timeout
            + (self.retry * self.delay_before_retry)
        )

    def up_bound(self) -> float:
        """Longest time from a failed real server answering again to its next (good) check."""
        return self.delay_loop + self.connect_timeout


@dataclass(frozen=True, kw_only=True)
class Topology:
    project: str
    root: Path
    compose_file: Path
    nodes: Mapping[str, Node]
    front_net: str  # the client's network: where the VIP lives and VRRP runs
    servers_net: str  # the directors' other network: where they reach the real servers
    vip: str
    vip_port: int
    directors: tuple[Director, ...]
    real_servers: tuple[Node, ...]
    client: Node
    health: HealthCheck

    @property
    def director_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.directors)

    @property
    def real_server_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.real_servers)

    @property
    def services(self) -> tuple[str, ...]:
        """Every node of the lab, Prometheus included."""
        return tuple(self.nodes)

    @property
    def prometheus_url(self) -> str | None:
        """Where the lab's Prometheus answers, on the client's network; None without one."""
        node = next((n for n in self.nodes.values() if n.role == "prometheus"), None)
        if node is None or self.front_net not in node.addresses:
            return None
        return f"http://{node.addresses[self.front_net]}:{PROMETHEUS_PORT}"

    def director(self, name: str) -> Director:
        for director in self.directors:
            if director.name == name:
                return director
        raise TopologyError(f"{name!r} is not a director (directors: {self.director_names})")

    @property
    def preferred_master(self) -> Director:
        """The director with the highest configured priority: MASTER in the start state."""
        return max(self.directors, key=lambda d: d.priority)

    def others(self, name: str) -> tuple[str, ...]:
        """The directors other than `name`."""
        return tuple(d for d in self.director_names if d != name)

    def front_if(self, node: str) -> str:
        return self.nodes[node].interfaces[self.front_net]

    def servers_if(self, node: str) -> str:
        return self.nodes[node].interfaces[self.servers_net]

    def server_of_address(self, address: str) -> str | None:
        """The real server with this address on the servers network."""
        for rs in self.real_servers:
            if rs.addresses.get(self.servers_net) == address:
                return rs.name
        return None


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}` and `${VAR:-default}` (the forms compose.yaml uses)."""
    return _VAR.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), text)


def _role(name: str, service: Mapping[str, Any]) -> str | None:
    labels = service.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) for item in labels if "=" in item)
    role = labels.get(ROLE_LABEL)
    if role is None:
        match = re.fullmatch(r"vipkeeper/([a-z]+)(?::.*)?", str(service.get("image", "")))
        role = match.group(1) if match else None
    if role is not None and role not in ROLES:
        raise TopologyError(f"service {name}: unknown role {role!r} (one of {ROLES})")
    return role


def _networks(name: str, service: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    nets = service.get("networks") or {}
    if isinstance(nets, list):
        nets = {n: {} for n in nets}
    addresses = {net: str((cfg or {}).get("ipv4_address", "")) for net, cfg in nets.items()}
    if not all(addresses.values()):
        raise TopologyError(f"service {name}: every network needs a fixed ipv4_address")
    # Docker attaches the highest priority first (eth0), then the next; ties by network name.
    order = sorted(nets, key=lambda net: (-int((nets[net] or {}).get("priority", 0)), net))
    return addresses, {net: f"eth{i}" for i, net in enumerate(order)}


def _director_config(
    name: str, service: Mapping[str, Any], root: Path, env: Mapping[str, str]
) -> tuple[Path, str | None, str]:
    for volume in service.get("volumes") or []:
        spec = volume if isinstance(volume, str) else f"{volume['source']}:{volume['target']}"
        match = re.fullmatch(r"(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(?::\w+)?", spec)
        if match and match["target"] == DIRECTOR_CONF:
            source = match["source"]
            var = _VAR.fullmatch(source)
            default = (var["default"] or "") if var else source
            path = Path(_interpolate(source, env))
            return (
                (path if path.is_absolute() else root / path),
                (var["name"] if var else None),
                (default),
            )
    raise TopologyError(f"director {name}: no volume mounted at {DIRECTOR_CONF}")


@dataclass(frozen=True, kw_only=True)
class VirtualService:
    """What a director's configuration says about the service the lab tests: the first VRRP
    instance's first VIP, the virtual server on it, its real servers and their checker."""

    vip: str
    port: int
    real_servers: tuple[str, ...]  # addresses, in configuration order
    health: HealthCheck


def virtual_service(config: Any, where: str) -> VirtualService:
    """Read the VIP, its virtual server and the checker timing from a parsed keepalived.conf
    (`where` names it in errors).  The Compose lab and an inventory read them alike."""
    instance = config.vrrp_instances[0]
    if not instance.virtual_ipaddresses:
        raise TopologyError(f"{where}: {instance.name} has no VIP")
    vip = instance.virtual_ipaddresses[0].address
    service = next((vs for vs in config.virtual_servers if vs.address == vip), None)
    if service is None or service.port is None or not service.real_servers:
        raise TopologyError(f"{where}: no virtual_server {vip} PORT")
    checker = next(iter(service.real_servers[0].checkers), None)
    if checker is None:
        raise TopologyError(f"{where}: the real servers have no checker")
    health = HealthCheck(
        delay_loop=checker.delay_loop,
        connect_timeout=float(getattr(checker, "connect_timeout", 0.0) or 0.0),
        retry=checker.retry,
        delay_before_retry=checker.delay_before_retry,
    )
    return VirtualService(
        vip=vip,
        port=service.port,
        real_servers=tuple(rs.address for rs in service.real_servers),
        health=health,
    )


def topology_of(
    service: VirtualService,
    nodes: Mapping[str, Node],
    *,
    project: str,
    root: Path,
    compose_file: Path,
    front_net: str,
    servers_net: str,
    client: Node,
    holders: str,
) -> Topology:
    """The lab of `nodes` serving `service`, as the Compose lab and an inventory both build it:
    the directors in the nodes' order, the real servers in the configuration's order, each found
    by its address on `servers_net` (`holders` says where one was looked for, in the error)."""
    by_address = {
        n.addresses.get(servers_net): n
        for n in nodes.values()
        if n.role == "realserver" and servers_net in n.addresses
    }
    real_servers = []
    for address in service.real_servers:
        node = by_address.get(address)
        if node is None:
            raise TopologyError(f"real_server {address}: no {holders} has it")
        real_servers.append(node)
    return Topology(
        project=project,
        root=root,
        compose_file=compose_file,
        vip=service.vip,
        vip_port=service.port,
        health=service.health,
        nodes=nodes,
        front_net=front_net,
        servers_net=servers_net,
        directors=tuple(n for n in nodes.values() if isinstance(n, Director)),
        real_servers=tuple(real_servers),
        client=client,
    )


def vrrp_settings(instance: Any) -> dict[str, Any]:
    """A Director's VRRP fields from its configuration's first vrrp_instance."""
    return {
        "instance": instance.name,
        "vrid": instance.virtual_router_id,
        "priority": instance.priority,
        "version": instance.version,
        "advert_int": instance.advert_int,
        "preempt": instance.preempt,
    }


def read_config(path: Path, where: str) -> Any:
    """vipkeeper's parser on one director's keepalived.conf; TopologyError when it is refused
    or has no VRRP instance."""
    result = load_config(str(path))
    if result.config is None or not result.config.vrrp_instances:
        errors = "; ".join(str(d) for d in result.errors) or "no vrrp_instance"
        raise TopologyError(f"{where}: {errors}")
    return result.config


def load(compose_file: Path = COMPOSE_FILE, *, env: Mapping[str, str] | None = None) -> Topology:
    """Read the lab from `compose_file` and the configuration files its directors mount
    (`env` resolves `${VAR:-default}`; the process environment by default)."""
    env = os.environ if env is None else env
    root = compose_file.resolve().parent
    doc = yaml.safe_load(compose_file.read_text())
    services: Mapping[str, Any] = doc.get("services") or {}
    nodes: dict[str, Node] = {}
    directors: list[Director] = []
    for name, service in services.items():
        role = _role(name, service)
        if role is None:
            continue
        addresses, interfaces = _networks(name, service)
        node = Node(name=name, role=role, addresses=addresses, interfaces=interfaces)
        if role != "director":
            nodes[name] = node
            continue
        path, var, default = _director_config(name, service, root, env)
        director = Director.running(
            node,
            read_config(path, f"director {name}: {path}").vrrp_instances[0],
            config_path=path,
            config_env=var,
            default_config=default,
        )
        directors.append(director)
        nodes[name] = director
    clients = [n for n in nodes.values() if n.role == "client"]
    if len(clients) != 1 or not directors:
        raise TopologyError(f"{compose_file}: need one client and at least one director")
    (client,) = clients
    (front_net,) = client.addresses
    others = {net for d in directors for net in d.addresses} - {front_net}
    if len(others) != 1:
        raise TopologyError(f"directors must share one network besides {front_net}: {others}")
    (servers_net,) = others

    first = directors[0].config_path
    return topology_of(
        virtual_service(read_config(first, str(first)), str(first)),
        nodes,
        project=str(doc.get("name") or root.name),
        root=root,
        compose_file=compose_file,
        front_net=front_net,
        servers_net=servers_net,
        client=client,
        holders="realserver service",
    )


@cache
def lab_topology() -> Topology:
    """The repository's lab, as compose.yaml and the process environment describe it."""
    return load()
