"""vipkeeper daemons in network namespaces: the VRRP engine proven end to end.

Each test builds its own lab (routers r1, r2, [r3] and a client on one bridge, a subnet of its
own), runs `vipkeeper run` in the routers and watches who holds the VIP. Timing bounds are the
protocol's own (RFC 3768 §6.1 / RFC 9568 §6.1), computed here from the RFC formulas rather than
taken from the code under test, plus a stated margin for a loaded 2-core machine. Times of
state changes are read from the daemons' JSON logs (millisecond timestamps), so polling latency
does not count against the daemon.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from vipkeeper.core import timing
from vipkeeper.testing.daemons import (
    SETTLE,
    V3_FAST,
    Subnet,
    Vipkeeper,
    assert_holders_throughout,
    describe,
    global_defs,
    holders,
    instance_config,
    script_config,
    start_vipkeeper,
    vipkeeper_argv,
    wait_for_holders,
    wait_until_reachable,
)
from vipkeeper.testing.netns import Host, Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

# Slack for the daemon's own reaction (process scheduling, the effect queue, netlink) on a
# loaded 2-core machine, added to every protocol-level bound.
MARGIN = 0.5


def skew_time(version: int, priority: int, advert_int: float) -> float:
    return timing.skew_time(version=version, priority=priority, master_adver_interval=advert_int)


def master_down_interval(version: int, priority: int, advert_int: float) -> float:
    return timing.master_down_interval(
        version=version, priority=priority, master_adver_interval=advert_int
    )


def add_routers(lab: Lab, net: Subnet, count: int, *, ipv6: bool = False) -> list[Host]:
    """Routers r1..rN at host numbers 1..N of `net` (IPv6 too when asked)."""
    routers = []
    for number in range(1, count + 1):
        addresses = [net.v4_cidr(number)] + ([net.v6_cidr(number)] if ipv6 else [])
        routers.append(lab.add_host(f"r{number}", addresses))
    return routers


def add_client(lab: Lab, net: Subnet, *, ipv6: bool = False) -> Host:
    return lab.add_host("client", [net.v4_cidr(200)] + ([net.v6_cidr(200)] if ipv6 else []))


def start_all(lab: Lab, routers: list[Host], configs: list[str]) -> list[Vipkeeper]:
    return [start_vipkeeper(lab, host, text) for host, text in zip(routers, configs, strict=True)]


def nft(lab: Lab, host: Host, ruleset: str) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", host.ns, "nft", "-f", "-"],
        input=ruleset,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def nft_counters(lab: Lab, host: Host, table: str) -> dict[str, int]:
    """Packet counters of the named counters (`counter NAME`) in inet table `table`."""
    listing = json.loads(
        lab.run(host, "nft", "-j", "list", "counters", "table", "inet", table).stdout
    )
    return {
        item["counter"]["name"]: int(item["counter"]["packets"])
        for item in listing["nftables"]
        if "counter" in item
    }


# -- election ----------------------------------------------------------------------------------


def test_election_on_start_gives_the_vip_to_the_highest_priority_only(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2, r3 = add_routers(lab, net, 3)
    daemons = start_all(
        lab,
        [r1, r2, r3],
        [instance_config(priority=p, vips=[net.vip4_cidr]) for p in (100, 200, 150)],
    )

    wait_for_holders(lab, [r1, r2, r3], net.vip4_cidr, ["r2"], within=SETTLE, daemons=daemons)

    # Once r2 speaks, the others stay Backup: a Master_Down_Interval later nothing changed.
    quiet = master_down_interval(2, 100, 1)
    samples = assert_holders_throughout(
        lab, [r1, r2, r3], net.vip4_cidr, ["r2"], seconds=quiet, daemons=daemons
    )
    assert samples > 10
    assert daemons[1].states() == ["BACKUP", "MASTER"], describe(daemons)
    # The daemons start up to a few hundred ms apart, more than the skew difference between
    # priorities, so a lower one may be Master for an instant before r2's first advert: the
    # protocol allows that. What must hold: once r2's adverts are out (one interval after it
    # became Master) nobody else becomes Master.
    elected = daemons[1].entered("MASTER")
    assert elected is not None
    for other in (daemons[0], daemons[2]):
        assert other.state() == "BACKUP", describe(daemons)
        assert other.entered("MASTER", after=elected.at + 1) is None, describe(daemons)


# -- hard failure --------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "advert_int"), [(2, 1.0), (3, 0.1)], ids=["v2-1s", "v3-100ms"])
def test_hard_failure_moves_the_vip_within_master_down_interval_and_the_client_follows(
    lab: Lab, version: int, advert_int: float
) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    client = add_client(lab, net)
    daemons = start_all(
        lab,
        [r1, r2],
        [
            instance_config(
                priority=p, vips=[net.vip4_cidr], version=version, advert_int=advert_int
            )
            for p in (200, 100)
        ],
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=daemons)
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=daemons)

    killed_at = lab.hard_fail(r1)  # r1 keeps its addresses after SIGKILL: only r2 counts

    wait_for_holders(lab, [r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=daemons)
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=daemons)
    takeover = daemons[1].entered("MASTER", after=killed_at)
    assert takeover is not None, describe(daemons)
    assert takeover.reason == "master down timer expired"
    took = takeover.at - killed_at
    # The Backup's Master_Down_Timer was last reset by an advert at most one interval before
    # the kill, so it fires between (MDI - advert_int) and MDI after it.
    bound = master_down_interval(version, 100, advert_int)
    assert took <= bound + MARGIN, f"took {took:.3f} s, bound {bound:.3f} + {MARGIN}"
    assert took >= bound - advert_int - 0.1, f"took over early: {took:.3f} s"


# -- graceful stop ---------------------------------------------------------------------------


def test_graceful_stop_hands_over_after_skew_time_and_removes_the_vip(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    client = add_client(lab, net)
    master, backup = start_all(
        lab, [r1, r2], [instance_config(priority=p, vips=[net.vip4_cidr]) for p in (200, 100)]
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])

    stopped_at = time.time()
    assert master.stop() == 0, describe([master])
    assert holders(lab, [r1], net.vip4_cidr) == [], "the stopped daemon left its VIP behind"
    assert master.transitions()[-1].reason == "shutdown requested"

    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[master, backup])
    takeover = backup.entered("MASTER", after=stopped_at)
    assert takeover is not None, describe([backup])
    took = takeover.at - stopped_at
    # Priority 0 makes the Backup wait Skew_Time only (RFC 3768 §6.4.2), far less than the
    # Master_Down_Interval a silent Master would cost.
    skew, mdi = skew_time(2, 100, 1), master_down_interval(2, 100, 1)
    assert took <= skew + 1 + MARGIN < mdi, f"took {took:.3f} s; skew {skew:.3f}, MDI {mdi:.3f}"
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=[backup])


# -- preemption ----------------------------------------------------------------------------------


def test_higher_priority_router_takes_the_vip_back_when_it_returns(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    high = instance_config(priority=200, vips=[net.vip4_cidr], **V3_FAST)
    low = instance_config(priority=100, vips=[net.vip4_cidr], **V3_FAST)
    first, backup = start_all(lab, [r1, r2], [high, low])
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[first, backup])

    assert first.stop() == 0
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[backup])

    returned = start_vipkeeper(lab, r1, high)
    wait_for_holders(
        lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[returned, backup]
    )
    assert returned.states() == ["BACKUP", "MASTER"], describe([returned])
    step_down = backup.transitions()[-1]
    assert (step_down.old, step_down.new) == ("MASTER", "BACKUP"), describe([backup])
    assert step_down.reason.startswith("higher priority 200"), step_down


def test_nopreempt_router_does_not_take_the_vip_back_and_one_master_remains(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    high = instance_config(priority=200, vips=[net.vip4_cidr], nopreempt=True, **V3_FAST)
    low = instance_config(priority=100, vips=[net.vip4_cidr], nopreempt=True, **V3_FAST)
    first = start_vipkeeper(lab, r1, high)
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[first])
    backup = start_vipkeeper(lab, r2, low)
    poll(SETTLE, lambda: _assert_state(backup, "BACKUP"))

    assert first.stop() == 0
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[backup])

    returned = start_vipkeeper(lab, r1, high)
    poll(SETTLE, lambda: _assert_state(returned, "BACKUP"))
    # Proving that something does not happen needs a watch of fixed length: three
    # Master_Down_Intervals of the returning router, sampling the holders all along.
    watch = 3 * master_down_interval(3, 200, 0.2)
    samples = assert_holders_throughout(
        lab, [r1, r2], net.vip4_cidr, ["r2"], seconds=watch, daemons=[returned, backup]
    )
    assert samples > 5
    assert returned.states() == ["BACKUP"], describe([returned])
    assert backup.state() == "MASTER"


def _assert_state(daemon: Vipkeeper, state: str) -> None:
    assert daemon.running(), describe([daemon])
    assert daemon.state() == state, describe([daemon])


# -- tracking ---------------------------------------------------------------------------------


def tracked_pair(
    lab: Lab, *, weight: int
) -> tuple[Subnet, tuple[Host, Host], Path, tuple[Vipkeeper, Vipkeeper]]:
    """r1 (priority 200, tracking script `chk` with `weight`, which passes while `flag`
    exists) and r2 (priority 100), both v3 fast; the flag exists."""
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    flag = lab.workdir / "r1-healthy"
    flag.touch()
    script = script_config("chk", f"/usr/bin/test -f {flag}", interval=0.1, weight=weight)
    master, backup = start_all(
        lab,
        [r1, r2],
        [
            global_defs("r1")
            + script
            + instance_config(priority=200, vips=[net.vip4_cidr], track_scripts=["chk"], **V3_FAST),
            instance_config(priority=100, vips=[net.vip4_cidr], **V3_FAST),
        ],
    )
    return net, (r1, r2), flag, (master, backup)


def test_failing_track_script_with_weight_zero_puts_the_master_in_fault(lab: Lab) -> None:
    net, (r1, r2), flag, (master, backup) = tracked_pair(lab, weight=0)
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])

    flag.unlink()
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[master, backup])
    assert master.state() == "FAULT", describe([master])

    flag.touch()  # the check passes again: out of FAULT, and preemption gives the VIP back
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])
    assert master.states()[-3:] == ["FAULT", "BACKUP", "MASTER"], describe([master])


def test_failing_weighted_track_script_lowers_priority_below_the_peer(lab: Lab) -> None:
    net, (r1, r2), flag, (master, backup) = tracked_pair(lab, weight=-150)
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])

    flag.unlink()  # 200 - 150 = 50 < 100: r2 preempts, r1 stays a healthy Backup
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[master, backup])
    step_down = master.transitions()[-1]
    assert (step_down.old, step_down.new) == ("MASTER", "BACKUP"), describe([master])
    assert step_down.reason.startswith("higher priority 100"), step_down
    assert "FAULT" not in master.states()


def test_tracked_interface_going_down_moves_the_vip_after_skew_time(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    # A veth pair inside r1 (this kernel has no dummy driver): trk0 is up while both ends are.
    lab.run(r1, "ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk0p")
    lab.run(r1, "ip", "link", "set", "trk0p", "up")
    lab.run(r1, "ip", "link", "set", "trk0", "up")
    master, backup = start_all(
        lab,
        [r1, r2],
        [
            instance_config(priority=200, vips=[net.vip4_cidr], track_interfaces=["trk0"]),
            instance_config(priority=100, vips=[net.vip4_cidr]),
        ],
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])

    down_at = time.time()
    lab.run(r1, "ip", "link", "set", "trk0", "down")
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[master, backup])
    fault = master.transitions()[-1]
    assert (fault.old, fault.new) == ("MASTER", "FAULT"), describe([master])
    assert "trk0" in fault.reason
    # The faulting Master says goodbye with priority 0 (as keepalived does), so the Backup
    # waits Skew_Time, not the Master_Down_Interval a silent Master would cost.
    takeover = backup.entered("MASTER", after=down_at)
    assert takeover is not None, describe([backup])
    took = takeover.at - down_at
    skew, mdi = skew_time(2, 100, 1), master_down_interval(2, 100, 1)
    assert took <= skew + 1 + MARGIN < mdi - 1, f"took {took:.3f} s; skew {skew:.3f}, MDI {mdi:.3f}"

    lab.run(r1, "ip", "link", "set", "trk0", "up")
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master, backup])


# -- unicast ------------------------------------------------------------------------------------

BLOCK_MULTICAST = """
table inet vktest {{
    counter vrrp_multicast_out {{}}
    counter vrrp_multicast_in {{}}
    counter vrrp_unicast_in {{}}
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr 224.0.0.18 counter name vrrp_multicast_out drop
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        ip daddr 224.0.0.18 counter name vrrp_multicast_in drop
        ip protocol vrrp ip daddr {address} counter name vrrp_unicast_in
    }}
}}
"""


def test_unicast_mode_works_with_multicast_blocked(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    client = add_client(lab, net)
    for number, host in ((1, r1), (2, r2)):
        nft(lab, host, BLOCK_MULTICAST.format(address=net.v4(number)))

    def unicast(number: int, peer: int, priority: int) -> str:
        return instance_config(
            priority=priority,
            vips=[net.vip4_cidr],
            unicast_src_ip=net.v4(number),
            unicast_peers=[net.v4(peer)],
            **V3_FAST,
        )

    # r1 first, so that r2 can only stay Backup by hearing r1's unicast adverts.
    master = start_vipkeeper(lab, r1, unicast(1, 2, 200))
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[master])
    backup = start_vipkeeper(lab, r2, unicast(2, 1, 100))
    poll(SETTLE, lambda: _assert_state(backup, "BACKUP"))
    # Heard for longer than its Master_Down_Interval, and still Backup.
    poll(SETTLE, lambda: _assert_counter_at_least(lab, r2, "vrrp_unicast_in", 10))
    assert backup.states() == ["BACKUP"], describe([backup])
    assert holders(lab, [r1, r2], net.vip4_cidr) == ["r1"], describe([master, backup])

    lab.hard_fail(r1)
    wait_for_holders(lab, [r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=[backup])
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=[backup])
    for host in (r1, r2):
        counters = nft_counters(lab, host, "vktest")
        assert counters["vrrp_multicast_out"] == 0, counters  # nothing was ever sent multicast
        assert counters["vrrp_multicast_in"] == 0, counters


def _assert_counter_at_least(lab: Lab, host: Host, name: str, packets: int) -> None:
    counters = nft_counters(lab, host, "vktest")
    assert counters[name] >= packets, counters


# -- versions and authentication ---------------------------------------------------------------


def test_v2_pass_authentication_elects_and_fails_over(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    daemons = start_all(
        lab,
        [r1, r2],
        [instance_config(priority=p, vips=[net.vip4_cidr], auth_pass="s3cret") for p in (200, 100)],
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=daemons)
    # r2 accepts r1's authenticated adverts: a whole Master_Down_Interval passes and r2 stays
    # Backup (with a wrong password it would not; see the next test).
    assert_holders_throughout(
        lab,
        [r1, r2],
        net.vip4_cidr,
        ["r1"],
        seconds=master_down_interval(2, 100, 1),
        daemons=daemons,
    )
    assert daemons[1].state() == "BACKUP", describe(daemons)

    lab.hard_fail(r1)
    wait_for_holders(lab, [r2], net.vip4_cidr, ["r2"], within=SETTLE, daemons=daemons)


def test_v2_wrong_password_on_one_side_gives_two_masters(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2)
    daemons = start_all(
        lab,
        [r1, r2],
        [
            instance_config(priority=200, vips=[net.vip4_cidr], auth_pass="right"),
            instance_config(priority=100, vips=[net.vip4_cidr], auth_pass="wrong"),
        ],
    )
    # Each drops the other's adverts, so each believes the Master is down.
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1", "r2"], within=SETTLE, daemons=daemons)


def test_v3_ipv6_vip_moves_on_hard_failure_and_the_client_follows(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2 = add_routers(lab, net, 2, ipv6=True)
    client = add_client(lab, net, ipv6=True)
    daemons = start_all(
        lab,
        [r1, r2],
        [instance_config(priority=p, vips=[net.vip6_cidr], **V3_FAST) for p in (200, 100)],
    )
    wait_for_holders(lab, [r1, r2], net.vip6_cidr, ["r1"], within=SETTLE, daemons=daemons)
    wait_until_reachable(lab, client, net.vip6, within=5, daemons=daemons)

    killed_at = lab.hard_fail(r1)
    wait_for_holders(lab, [r2], net.vip6_cidr, ["r2"], within=SETTLE, daemons=daemons)
    wait_until_reachable(lab, client, net.vip6, within=5, daemons=daemons)
    takeover = daemons[1].entered("MASTER", after=killed_at)
    assert takeover is not None, describe(daemons)
    bound = master_down_interval(3, 100, 0.2)
    assert takeover.at - killed_at <= bound + MARGIN, takeover


# -- three routers ------------------------------------------------------------------------------


def test_three_routers_hand_the_vip_down_the_priority_order(lab: Lab) -> None:
    net = Subnet.next()
    r1, r2, r3 = add_routers(lab, net, 3)
    client = add_client(lab, net)
    routers = [r1, r2, r3]
    daemons = start_all(
        lab,
        routers,
        [instance_config(priority=p, vips=[net.vip4_cidr], **V3_FAST) for p in (150, 100, 50)],
    )
    wait_for_holders(lab, routers, net.vip4_cidr, ["r1"], within=SETTLE, daemons=daemons)

    killed_at = lab.hard_fail(r1)  # r1 keeps its addresses after SIGKILL: only survivors count
    wait_for_holders(lab, [r2, r3], net.vip4_cidr, ["r2"], within=SETTLE, daemons=daemons)
    assert daemons[2].entered("MASTER", after=killed_at) is None, describe(daemons)
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=daemons)

    lab.hard_fail(r2)
    wait_for_holders(lab, [r3], net.vip4_cidr, ["r3"], within=SETTLE, daemons=daemons)
    wait_until_reachable(lab, client, net.vip4, within=5, daemons=daemons)


# -- configuration ------------------------------------------------------------------------------


def test_malformed_configuration_is_refused_with_exit_1_and_a_located_message(lab: Lab) -> None:
    net = Subnet.next()
    (r1,) = add_routers(lab, net, 1)
    bad = lab.workdir / "bad.conf"
    bad.write_text(
        "vrrp_instance VI_1 {\n"
        "    interface eth0\n"
        "    virtual_router_id 51\n"
        "    priorty 100\n"  # misspelt on purpose: line 4
        f"    virtual_ipaddress {{\n        {net.vip4_cidr}\n    }}\n"
        "}\n"
    )
    result = lab.run(r1, *vipkeeper_argv(), "run", "-f", str(bad), check=False, timeout=30)
    assert result.returncode == 1, result
    assert f"{bad}:4:" in result.stderr, result.stderr
    assert "priorty" in result.stderr
    assert "Traceback" not in result.stderr
    assert holders(lab, [r1], net.vip4_cidr) == []
