"""An inventory's topology: roles from the groups, the VIP and VRRP settings from each director's
deployed keepalived.conf, addresses, interfaces and MACs from the hosts' `ip -j addr` (answers
made up here in the shape iproute2 prints them; no host is contacted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness.faults import FaultError, HttpdStop, Kill, Partition
from harness.inventory import (
    FRONT_NET,
    SERVERS_NET,
    FaultsNotAllowed,
    InventoryError,
    InventoryLab,
    discover,
    group_hosts,
    parse_ip_addr,
    roles_of,
)
from harness.topology import COMPOSE_FILE, DIRECTOR_CONF, TopologyError

LAB = Path(COMPOSE_FILE).parent / "lab"

INVENTORY = {
    "_meta": {"hostvars": {}},
    "all": {"children": ["ungrouped", "lvs"]},
    "lvs": {"children": ["directors", "realservers", "clients"]},
    "directors": {"hosts": ["lb-a", "lb-b"]},
    "realservers": {"children": ["web"]},
    "web": {"hosts": ["web-1", "web-2"]},
    "clients": {"hosts": ["probe"]},
}


def link(name: str, mac: str, *addresses: str) -> dict[str, object]:
    return {
        "ifname": name,
        "address": mac,
        "addr_info": [
            {"family": "inet", "local": a.split("/")[0], "prefixlen": int(a.split("/")[1])}
            for a in addresses
        ]
        + [{"family": "inet6", "local": "fe80::1", "prefixlen": 64}],
    }


HOSTS = {
    # lb-a holds the VIP now, on its VRRP interface.
    "lb-a": [
        link("lo", "00:00:00:00:00:00", "127.0.0.1/8"),
        link("eth0", "02:00:00:00:00:53", "172.16.0.53/16", "172.16.9.1/16"),
        link("eth1", "02:00:00:00:01:53", "192.168.0.53/24"),
    ],
    "lb-b": [
        link("eth0", "02:00:00:00:00:57", "172.16.0.57/16"),
        link("eth1", "02:00:00:00:01:57", "192.168.0.57/24"),
    ],
    "web-1": [
        link("lo", "00:00:00:00:00:00", "127.0.0.1/8", "172.16.9.1/32"),
        link("eth0", "02:00:00:00:00:54", "172.16.0.54/16"),
        link("eth1", "02:00:00:00:01:54", "192.168.0.54/24"),
    ],
    "web-2": [
        link("lo", "00:00:00:00:00:00", "127.0.0.1/8", "172.16.9.1/32"),
        link("eth1", "02:00:00:00:01:55", "192.168.0.55/24"),
    ],
    "probe": [link("eth0", "02:00:00:00:00:64", "172.16.0.100/16")],
}
CONFIGS = {"lb-a": LAB / "dir1" / "keepalived.conf", "lb-b": LAB / "dir2" / "keepalived.conf"}


def answers(host: str, command: str) -> str:
    if command == "ip -j addr show":
        return json.dumps(HOSTS[host])
    if command == f"cat {DIRECTOR_CONF}":
        return CONFIGS[host].read_text()
    raise AssertionError(f"unexpected command on {host}: {command}")


def test_groups_give_the_roles_children_included() -> None:
    assert group_hosts(INVENTORY, "realservers") == ["web-1", "web-2"]
    assert roles_of(INVENTORY) == {
        "lb-a": "director",
        "lb-b": "director",
        "web-1": "realserver",
        "web-2": "realserver",
        "probe": "client",
    }


def test_an_inventory_without_one_client_or_with_a_host_in_two_roles_is_refused() -> None:
    with pytest.raises(InventoryError, match="exactly one client"):
        roles_of({**INVENTORY, "clients": {"hosts": []}})
    with pytest.raises(InventoryError, match="two role groups"):
        roles_of({**INVENTORY, "clients": {"hosts": ["probe", "web-1"]}})


def test_ip_addr_reads_macs_and_ipv4_addresses_only() -> None:
    found = parse_ip_addr(json.dumps(HOSTS["lb-a"]))
    assert found["eth0"].mac == "02:00:00:00:00:53"
    assert [str(n) for n in found["eth0"].networks] == ["172.16.0.53/16", "172.16.9.1/16"]


def test_topology_from_the_deployed_configuration_and_the_hosts_addresses() -> None:
    topo, interfaces = discover("site.ini", roles_of(INVENTORY), answers)
    assert topo.project == "site.ini"
    assert topo.director_names == ("lb-a", "lb-b")
    assert topo.real_server_names == ("web-1", "web-2")  # keepalived.conf's real_server order
    assert topo.client.name == "probe"
    assert (topo.vip, topo.vip_port) == ("172.16.9.1", 80)
    assert topo.preferred_master.name == "lb-a"
    assert [d.priority for d in topo.directors] == [150, 100]
    assert topo.director("lb-b").master_down_interval == pytest.approx(3 + 156 / 256)
    assert topo.health.down_bound() == 2 + 2 * 1 + 1 * 1
    # The VIP a director holds is not taken for its own address.
    assert topo.nodes["lb-a"].addresses == {FRONT_NET: "172.16.0.53", SERVERS_NET: "192.168.0.53"}
    assert topo.front_if("lb-b") == "eth0" and topo.servers_if("lb-b") == "eth1"
    assert topo.front_if("probe") == "eth0"
    # A real server on the servers network only has no frontend interface.
    assert topo.nodes["web-2"].interfaces == {SERVERS_NET: "eth1"}
    assert topo.server_of_address("192.168.0.55") == "web-2"
    assert interfaces["probe"]["eth0"].mac == "02:00:00:00:00:64"


@pytest.mark.parametrize(
    ("changed", "links", "refusal"),
    [
        pytest.param(
            "web-2",
            [link("eth1", "02:00:00:00:01:56", "192.168.0.56/24")],
            r"real_server 192\.168\.0\.55",
            id="a real server address no host has",
        ),
        pytest.param(
            "lb-a",
            [link("ens3", "02:00:00:00:00:53", "172.16.0.53/16")],
            "VRRP interface 'eth0'",
            id="a director whose VRRP interface is not on the host",
        ),
    ],
)
def test_a_host_whose_addresses_do_not_match_the_configuration_is_refused(
    changed: str, links: list[dict[str, object]], refusal: str
) -> None:
    hosts = {**HOSTS, changed: links}

    def run(host: str, command: str) -> str:
        if command == "ip -j addr show":
            return json.dumps(hosts[host])
        return answers(host, command)

    with pytest.raises(TopologyError, match=refusal):
        discover("site.ini", roles_of(INVENTORY), run)


def test_a_director_configuration_elsewhere_is_read_where_the_inventory_says() -> None:
    elsewhere = "/etc/vipkeeper/site.conf"

    def run(host: str, command: str) -> str:
        if host == "lb-b" and command == f"cat {DIRECTOR_CONF}":
            raise AssertionError("lb-b's configuration read from the default path")
        if host == "lb-b" and command == f"cat {elsewhere}":
            return CONFIGS["lb-b"].read_text()
        return answers(host, command)

    topo, _ = discover("site.ini", roles_of(INVENTORY), run, config_paths={"lb-b": elsewhere})
    assert topo.director("lb-b").config_path == Path(elsewhere)
    assert topo.director("lb-b").priority == 100


class RecordingHosts:
    """An InventoryLab's hosts that record every command instead of running it."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def lab(self, *, allow_faults: bool, ansible_host: str) -> InventoryLab:
        lab = InventoryLab.__new__(InventoryLab)
        lab.allow_faults = allow_faults
        lab.inventory_path = Path("site.yml")
        lab.inventory = {"_meta": {"hostvars": {h: {"ansible_host": ansible_host} for h in HOSTS}}}
        lab.roles = roles_of(INVENTORY)
        lab.topology, lab._interfaces = discover("site.yml", lab.roles, answers)
        lab.hosts = {h: self.host(h) for h in lab.roles}
        return lab

    def host(self, name: str) -> object:
        recorder = self

        class Host:
            def run(self, command: str) -> object:
                recorder.commands.append((name, command))
                return type("Result", (), {"rc": 0, "stdout": "", "stderr": ""})()

        return Host()


def test_a_read_only_inventory_refuses_every_fault_before_touching_a_host() -> None:
    hosts = RecordingHosts()
    lab = hosts.lab(allow_faults=False, ansible_host="10.99.0.1")
    for fault in (Kill(lab, "lb-a"), HttpdStop(lab, "web-1"), Partition(lab)):
        with pytest.raises(FaultError, match="--allow-faults"):
            fault.apply()
    with pytest.raises(FaultsNotAllowed):
        lab.kill("lb-a")
    assert hosts.commands == []


def test_failing_a_director_reached_over_its_frontend_is_refused() -> None:
    hosts = RecordingHosts()
    lab = hosts.lab(allow_faults=True, ansible_host="172.16.0.53")  # lb-a's frontend address
    with pytest.raises(InventoryError, match="cut the harness off"):
        lab.kill("lb-a")
    assert hosts.commands == []


def test_failing_a_director_takes_its_frontend_down_and_kills_and_holds_its_daemon() -> None:
    hosts = RecordingHosts()
    lab = hosts.lab(allow_faults=True, ansible_host="10.99.0.1")
    lab.kill("lb-b")
    ((host, command),) = hosts.commands
    assert host == "lb-b"
    assert (
        command.index("ip link set dev eth0 down")
        < command.index("systemctl kill -s SIGKILL vipkeeper")
        < command.index("systemctl stop vipkeeper")
    )
