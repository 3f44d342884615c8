"""Recovery from a crash: the highest router's daemon is killed while Master (its VIP stays on
the interface), the Backup takes over, the daemon is started again. The stale VIP must be gone
before the restarted daemon enters the election, so from that moment until it is Master again
it never answers ARP for an address it does not own; then it preempts and is the one holder.

A client in the lab asks "who has VIP" every 20 ms with a raw ARP socket and records every
answer's sender MAC and time, so the check is what a neighbour on the LAN sees.
"""

from __future__ import annotations

import pytest

from vipkeeper.testing.daemons import (
    SETTLE,
    V3_FAST,
    Subnet,
    describe,
    instance_config,
    log_time,
    start_vipkeeper,
    wait_for_holders,
)
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns


# Every 20 ms one ARP request for argv[1] from this host's eth0; prints "time mac" per answer.
ARP_PROBER = r"""
import socket, struct, sys, time, select
vip = socket.inet_aton(sys.argv[1])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
sock.bind(("eth0", 0))
mac = sock.getsockname()[4]
me = socket.inet_aton(sys.argv[2])
request = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
           + mac + me + b"\x00" * 6 + vip)
print("ready", flush=True)
next_send = 0.0
while True:
    now = time.time()
    if now >= next_send:
        sock.send(request)
        next_send = now + 0.02
    ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.time()))
    if ready:
        frame = sock.recv(2048)
        if len(frame) >= 42 and frame[20:22] == b"\x00\x02" and frame[28:32] == vip:
            print(f"{time.time():.6f} {frame[22:28].hex(':')}", flush=True)
"""


def test_a_restarted_top_router_never_answers_arp_for_its_stale_vip(lab: Lab) -> None:
    net = Subnet.next()
    r1 = lab.add_host("r1", [net.v4_cidr(1)])
    r2 = lab.add_host("r2", [net.v4_cidr(2)])
    client = lab.add_host("client", [net.v4_cidr(200)])
    top = instance_config(priority=200, vips=[net.vip4_cidr], **V3_FAST)
    first = start_vipkeeper(lab, r1, top)
    second = start_vipkeeper(
        lab, r2, instance_config(priority=100, vips=[net.vip4_cidr], **V3_FAST)
    )
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=[first, second])

    # The crash: the process dies, the VIP stays on r1's interface.
    lab.kill_all(r1)
    first.process.wait(10)
    wait_for_holders(
        lab, [r1, r2], net.vip4_cidr, ["r1", "r2"], within=SETTLE, daemons=[first, second]
    )

    answers_log = lab.workdir / "arp-answers.txt"
    with answers_log.open("wb") as out:
        prober = lab.spawn_python(client, ARP_PROBER, net.vip4, net.v4(200), stdout=out)

    def prober_ready() -> None:
        assert answers_log.read_text().startswith("ready"), "the ARP prober did not start"

    poll(SETTLE, prober_ready)
    restarted = start_vipkeeper(lab, r1, top)
    daemons = [restarted, second]
    wait_for_holders(lab, [r1, r2], net.vip4_cidr, ["r1"], within=SETTLE, daemons=daemons)

    def back_as_master() -> None:
        assert restarted.entered("MASTER") is not None, describe(daemons)

    poll(SETTLE, back_as_master)
    prober.terminate()
    prober.wait(10)

    in_election = restarted.entered("BACKUP")
    assert in_election is not None, describe(daemons)
    # The Master adds its VIP just before it logs the transition: the window ends at the add.
    master_again = restarted.entered("MASTER")
    assert master_again is not None, describe(daemons)
    added = next(
        (
            log_time(entry["ts"])
            for entry in restarted.records()
            if entry.get("msg", "").startswith(f"added {net.vip4_cidr}")
            and log_time(entry["ts"]) >= in_election.at
        ),
        master_again.at,  # no add logged: the address was there already
    )
    r1_mac = lab.mac(r1)
    answers = [line.split() for line in answers_log.read_text().splitlines()[1:]]
    assert answers, "the prober heard no ARP answer at all"
    # Log stamps are milliseconds: allow that rounding at both edges.
    wrong = [
        float(at)
        for at, mac in answers
        if mac == r1_mac and in_election.at + 0.001 < float(at) < added - 0.001
    ]
    assert not wrong, (
        f"r1 answered ARP for {net.vip4} {len(wrong)} time(s) between entering the election "
        f"({in_election.at:.3f}) and adding it as Master ({added:.3f})\n" + describe(daemons)
    )
    heard_from = {mac for _at, mac in answers}
    assert r1_mac in heard_from, "r1 never answered as Master: the probe would not see it"
    messages = [entry.get("msg", "") for entry in restarted.records()]
    removal = [i for i, m in enumerate(messages) if "left by an earlier run" in m]
    election = [i for i, m in enumerate(messages) if "INITIALIZE -> BACKUP" in m]
    assert removal and election and removal[0] < election[0], messages
