"""Start and ARP suppression: one master, both real servers
answering through genuine LVS-DR, and only the MASTER's MAC answering ARP for the VIP."""

from __future__ import annotations

import contextlib

import pytest
from harness import (
    Lab,
    WaitTimeout,
    arp_answers,
    masters,
    servers_answering,
    target,
    wait_until,
)
from harness.checks import instance_of, real_server_health
from harness.faults import ArpLeak, Kill
from harness.probes import director_status
from harness.topology import REACTION_MARGIN

TOPO = target.topology()

# Bound for a VIP move after the master dies: RFC 3768 §6.1 Master_Down_Interval of the backup,
# plus a margin for the daemon's reaction and for polling through `docker exec`.
FAILOVER_MARGIN = 2.0
FAILOVER_BOUND = max(d.master_down_interval for d in TOPO.directors) + FAILOVER_MARGIN
VIP = TOPO.vip


# --- 1. start -----------------------------------------------------------------------------------
def test_exactly_one_director_holds_the_vip(healthy_lab: Lab) -> None:
    holders = masters(healthy_lab)
    assert len(holders) == 1, holders
    assert holders <= set(TOPO.director_names)


def test_each_directors_own_status_agrees_with_who_holds_the_vip(healthy_lab: Lab) -> None:
    """`vipkeeper status --json` through each director's control socket: the director holding
    the VIP says MASTER, the others BACKUP, and each sees every real server healthy (each
    director checks the real servers itself: allowed one check cycle to agree)."""
    if healthy_lab.director_daemon() != "vipkeeper":
        pytest.skip("the keepalived baseline has no `vipkeeper status`")
    (master,) = masters(healthy_lab)
    problems: list[str] = ["not asked yet"]

    def agree() -> bool:
        problems.clear()
        for director in TOPO.director_names:
            status = director_status(healthy_lab, director)
            instance = instance_of(status)
            expected = "MASTER" if director == master else "BACKUP"
            if instance is None or instance.get("state") != expected:
                problems.append(f"{director}: not {expected}: {instance}")
            health = real_server_health(status, healthy_lab)
            if health != dict.fromkeys(TOPO.real_server_names, True):
                problems.append(f"{director}: real servers {health}")
        return not problems

    with contextlib.suppress(WaitTimeout):
        wait_until(
            agree,
            timeout=TOPO.health.up_bound() + REACTION_MARGIN,
            interval=0.5,
            what="every director's status to agree",
        )
    assert problems == []


def test_client_gets_answers_from_both_real_servers(healthy_lab: Lab) -> None:
    answers = servers_answering(healthy_lab, requests=30)
    assert "" not in answers, f"failed requests: {answers}"
    assert set(answers) == set(TOPO.real_server_names), answers


def test_director_forwards_requests_and_never_sees_replies(healthy_lab: Lab) -> None:
    """LVS-DR: the master receives client->VIP packets on the frontend and sends them, IP
    untouched, out of its servers interface; the replies (VIP->client) never pass it."""
    (master,) = masters(healthy_lab)
    if healthy_lab.kind == "inventory" and not healthy_lab.exec(master, "command -v tcpdump").ok:
        pytest.skip(f"tcpdump is not installed on {master}: the capture needs it")
    capture = "/tmp/dr-capture.txt"
    healthy_lab.exec(master, ["rm", "-f", capture])
    healthy_lab.exec_detached(
        master,
        ["sh", "-c", f"timeout 6 tcpdump -i any -nn -l 'tcp port 80' >{capture} 2>&1"],
    )
    wait_until(
        lambda: "listening" in healthy_lab.exec(master, ["cat", capture]).output,
        timeout=10,
        what="tcpdump on the master to start",
    )
    answers = servers_answering(healthy_lab, requests=30)  # all on one server by chance: 2 / 2**30
    assert set(answers) == set(TOPO.real_server_names), answers
    front, servers = TOPO.front_if(master), TOPO.servers_if(master)

    def finished_capture() -> list[str]:
        out = healthy_lab.exec(master, ["cat", capture]).output
        return out.splitlines() if "captured" in out else []

    lines = wait_until(finished_capture, timeout=15, what="tcpdump on the master to finish")
    to_vip = [line for line in lines if f"> {VIP}.80:" in line]
    from_vip = [line for line in lines if f" {VIP}.80 >" in line]
    assert any(f" {front} " in line and " In " in line for line in to_vip), lines
    assert any(f" {servers} " in line and " Out " in line for line in to_vip), lines
    assert from_vip == [], "replies passed through the director"


# --- 3. ARP suppression -------------------------------------------------------------------------
def test_only_the_masters_mac_answers_arp_for_the_vip(healthy_lab: Lab) -> None:
    (master,) = masters(healthy_lab)
    answers = arp_answers(healthy_lab)
    assert [a.mac for a in answers] == [healthy_lab.mac(master, TOPO.front_net)], answers


@pytest.mark.parametrize("real_server", TOPO.real_server_names)
def test_real_server_holds_vip_on_lo_with_arp_suppressed(
    healthy_lab: Lab, real_server: str
) -> None:
    host = healthy_lab.testinfra_host(real_server)
    assert f"{VIP}" in host.interface("lo").addresses
    assert host.sysctl("net.ipv4.conf.all.arp_ignore") == 1
    assert host.sysctl("net.ipv4.conf.all.arp_announce") == 2
    frontend_if = host.interface(TOPO.front_if(real_server))
    assert VIP not in frontend_if.addresses


@pytest.mark.faults
def test_arp_probe_catches_a_real_server_answering_when_suppression_is_off(
    healthy_lab: Lab,
) -> None:
    leak = ArpLeak(healthy_lab, TOPO.real_server_names[0])
    leak.apply()
    try:
        answering = {a.service for a in arp_answers(healthy_lab)}
        assert leak.node in answering, f"the probe missed {leak.node}'s wrong answer: {answering}"
    finally:
        leak.undo()
    answering = {a.service for a in arp_answers(healthy_lab)}
    assert leak.node not in answering, answering


@pytest.mark.faults
def test_only_the_new_masters_mac_answers_arp_after_failover(healthy_lab: Lab) -> None:
    (old,) = masters(healthy_lab)
    (new,) = TOPO.others(old)
    Kill(healthy_lab, old).apply()
    wait_until(
        lambda: masters(healthy_lab) == {new},
        timeout=FAILOVER_BOUND + 5,
        what=f"{new} to take the VIP",
    )
    answers = arp_answers(healthy_lab)
    assert [a.mac for a in answers] == [healthy_lab.mac(new, TOPO.front_net)], answers
