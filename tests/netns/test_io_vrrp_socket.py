"""vipkeeper.io.vrrp_socket between two namespaces: what one host sends, the other receives with
TTL / hop limit 255, the right source and destination, and the payload untouched."""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from vipkeeper.io.vrrp_socket import parse_ipv4_datagram
from vipkeeper.testing.netns import KEEPALIVED, Host, Lab
from vipkeeper.testing.waits import polled

pytestmark = pytest.mark.netns

RECEIVER = """
import asyncio, json, socket, sys
from vipkeeper.io.vrrp_socket import VrrpSocket

async def main(interface, family, out):
    family = socket.AF_INET6 if family == "6" else socket.AF_INET
    async with await VrrpSocket.open(interface, family) as sock:
        open(out + ".ready", "w").close()
        with open(out, "a") as log:
            async for packet in sock:
                log.write(json.dumps({
                    "source": packet.source, "destination": packet.destination,
                    "ttl": packet.ttl, "payload": packet.payload.hex(),
                }) + "\\n")
                log.flush()

asyncio.run(main(*sys.argv[1:]))
"""

SENDER = """
import asyncio, socket, sys
from vipkeeper.io.vrrp_socket import VrrpSocket

async def main(interface, family, source, destination, payload):
    family = socket.AF_INET6 if family == "6" else socket.AF_INET
    async with await VrrpSocket.open(interface, family) as sock:
        sock.send(source, destination, bytes.fromhex(payload))

asyncio.run(main(*sys.argv[1:]))
"""

PAYLOAD = bytes.fromhex("3101640100010000") + b"vipkeeper-test"

poll = polled(10, interval=0.1)


def start_receiver(lab: Lab, host: Host, family: str, out: Path) -> None:
    spawn_ready(lab, host, out, RECEIVER, host.ifname, family, str(out))


def spawn_ready(lab: Lab, host: Host, out: Path, script: str, *args: str) -> None:
    """Run `script` in `host`; return once it has written `<out>.ready`."""
    lab.spawn_python(host, script, *args)

    @poll
    def ready() -> None:
        assert Path(f"{out}.ready").exists()

    ready()


def received(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def link_local(lab: Lab, host: Host) -> str:
    return next(a.split("/")[0] for a in lab.addresses(host, "inet6") if a.startswith("fe80:"))


@pytest.fixture
def pair(lab: Lab) -> tuple[Host, Host]:
    a = lab.add_host("a", ["10.0.0.1/24", "fd00::1/64"])
    b = lab.add_host("b", ["10.0.0.2/24", "fd00::2/64"])
    return a, b


@pytest.mark.parametrize(
    ("family", "destination"),
    [("4", "224.0.0.18"), ("4", "10.0.0.2"), ("6", "ff02::12"), ("6", "fd00::2")],
    ids=["ipv4-multicast", "ipv4-unicast", "ipv6-multicast", "ipv6-unicast"],
)
def test_vrrp_packet_arrives_with_ttl_255_source_and_destination(
    lab: Lab, pair: tuple[Host, Host], tmp_path: Path, family: str, destination: str
) -> None:
    a, b = pair
    source = "10.0.0.1" if family == "4" else link_local(lab, a)
    out = tmp_path / "b.jsonl"
    start_receiver(lab, b, family, out)

    lab.python(a, SENDER, a.ifname, family, source, destination, PAYLOAD.hex())

    @poll
    def arrived() -> None:
        assert received(out) == [
            {"source": source, "destination": destination, "ttl": 255, "payload": PAYLOAD.hex()}
        ]

    arrived()


@pytest.mark.parametrize("family", ["4", "6"])
def test_sender_does_not_receive_its_own_multicast(
    lab: Lab, pair: tuple[Host, Host], tmp_path: Path, family: str
) -> None:
    a, b = pair
    source = "10.0.0.1" if family == "4" else link_local(lab, a)
    group = "224.0.0.18" if family == "4" else "ff02::12"
    at_a, at_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    start_receiver(lab, a, family, at_a)
    start_receiver(lab, b, family, at_b)

    lab.python(a, SENDER, a.ifname, family, source, group, PAYLOAD.hex())

    @poll
    def arrived_at_peer() -> None:
        assert len(received(at_b)) == 1

    arrived_at_peer()
    # A looped-back copy would have been queued at `a` before the frame left the host.
    assert received(at_a) == []


def test_ipv4_header_options_are_skipped_using_ihl() -> None:
    options = bytes([0x94, 0x04, 0x00, 0x00])  # Router Alert, 4 bytes
    payload = b"\x31\x07\x64\x01\x00\x01\x00\x00\x0a\x00\x00\x64"
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x46,  # version 4, IHL 6 words
        0,
        24 + len(payload),
        1,
        0,
        255,
        112,
        0,
        bytes([10, 0, 0, 1]),
        bytes([224, 0, 0, 18]),
    )
    packet = parse_ipv4_datagram(header + options + payload + b"\x00\x00")  # plus padding

    assert packet is not None
    assert (packet.source, packet.destination, packet.ttl) == ("10.0.0.1", "224.0.0.18", 255)
    assert packet.payload == payload


def test_non_vrrp_or_truncated_ipv4_datagrams_are_ignored() -> None:
    assert parse_ipv4_datagram(b"\x45\x00") is None
    icmp = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 1, 0, bytes(4), bytes(4))
    assert parse_ipv4_datagram(icmp + bytes(8)) is None


KEEPALIVED_CONFIG = """
global_defs {{
    router_id b
    enable_script_security
    script_user root
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {{
        {vip}
    }}
}}
"""


@pytest.mark.skipif(shutil.which(KEEPALIVED) is None, reason="keepalived not installed")
@pytest.mark.parametrize(
    ("family", "vip", "group", "first_byte"),
    [("4", "10.0.0.100/24", "224.0.0.18", 0x21), ("6", "fd00::100/64", "ff02::12", 0x31)],
    ids=["vrrpv2-ipv4", "vrrpv3-ipv6"],
)
def test_receives_keepalived_advertisements(
    lab: Lab,
    pair: tuple[Host, Host],
    tmp_path: Path,
    family: str,
    vip: str,
    group: str,
    first_byte: int,
) -> None:
    a, b = pair
    out = tmp_path / "a.jsonl"
    start_receiver(lab, a, family, out)
    source = "10.0.0.2" if family == "4" else link_local(lab, b)

    lab.start_keepalived(b, KEEPALIVED_CONFIG.format(vip=vip))

    @poll
    def advert_arrived() -> None:
        packets = received(out)
        assert packets, "no advertisement from keepalived yet"
        packet = packets[0]
        payload = bytes.fromhex(str(packet["payload"]))
        assert (packet["source"], packet["destination"], packet["ttl"]) == (source, group, 255)
        assert (payload[0], payload[1], payload[2]) == (
            first_byte,
            51,
            150,
        )  # version/type, VRID, priority

    advert_arrived()


POOL_RECEIVER = """
import asyncio, json, socket, sys
from vipkeeper.io.vrrp_socket import VrrpSocketPool

async def main(interface, out):
    log = open(out, "a")
    loop = asyncio.get_running_loop()
    def sink(interface, family, packet, received_at):
        age = loop.time() - received_at
        log.write(json.dumps({
            "interface": interface, "family": family, "source": packet.source,
            "destination": packet.destination, "ttl": packet.ttl,
            "payload": packet.payload.hex(), "fresh": 0 <= age < 1,
        }) + "\\n")
        log.flush()
    pool = VrrpSocketPool(sink)
    await pool.open(interface, socket.AF_INET)
    await pool.open(interface, socket.AF_INET6)
    open(out + ".ready", "w").close()
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""

POOL_SENDER = """
import asyncio, sys
from vipkeeper.io.vrrp_socket import VrrpSocketPool

async def main(interface, source4, source6, payload):
    pool = VrrpSocketPool(lambda *packet: None)
    pool.send(interface=interface, source=source4, destination="224.0.0.18",
              payload=bytes.fromhex(payload))
    pool.send(interface=interface, source=source6, destination="ff02::12",
              payload=bytes.fromhex(payload))
    pool.close()

asyncio.run(main(*sys.argv[1:]))
"""


def test_socket_pool_opens_per_family_and_tags_packets_with_interface_and_family(
    lab: Lab, pair: tuple[Host, Host], tmp_path: Path
) -> None:
    a, b = pair
    out = tmp_path / "b.jsonl"
    spawn_ready(lab, b, out, POOL_RECEIVER, b.ifname, str(out))
    source6 = link_local(lab, a)

    lab.python(a, POOL_SENDER, a.ifname, "10.0.0.1", source6, PAYLOAD.hex())

    @poll
    def both_arrived() -> None:
        packets = sorted(received(out), key=lambda p: int(str(p["family"])))
        assert packets == [
            {"interface": "eth0", "family": 2, "source": "10.0.0.1",
             "destination": "224.0.0.18", "ttl": 255, "payload": PAYLOAD.hex(), "fresh": True},
            {"interface": "eth0", "family": 10, "source": source6,
             "destination": "ff02::12", "ttl": 255, "payload": PAYLOAD.hex(), "fresh": True},
        ]  # fmt: skip

    both_arrived()


LAZY_RECEIVER = """
import asyncio, json, socket, sys
from vipkeeper.io.vrrp_socket import VrrpSocketPool

async def main(interface, out):
    log = open(out, "a")
    loop = asyncio.get_running_loop()
    def sink(interface, family, packet, received_at):
        log.write(json.dumps({
            "family": family, "priority": packet.payload[2],
            "waited": loop.time() - received_at,
        }) + "\\n")
        log.flush()
    pool = VrrpSocketPool(sink)
    for family in (socket.AF_INET, socket.AF_INET6):
        await pool.open(interface, family)
        pool.set_lazy(interface, family, True)
    open(out + ".ready", "w").close()
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""

HELD_BACK = 0.3  # seconds the routine advertisements sit unread before the doorbell rings


def test_a_lazy_socket_holds_routine_adverts_until_a_priority_zero_one_rings_the_doorbell(
    lab: Lab, pair: tuple[Host, Host], tmp_path: Path
) -> None:
    a, b = pair
    out = tmp_path / "b.jsonl"
    spawn_ready(lab, b, out, LAZY_RECEIVER, b.ifname, str(out))
    source6 = link_local(lab, a)
    routine = PAYLOAD  # priority 100
    leaving = PAYLOAD[:2] + b"\x00" + PAYLOAD[3:]  # priority 0: a Master leaving
    lab.python(a, POOL_SENDER, a.ifname, "10.0.0.1", source6, routine.hex())
    # A lazy socket must not hand routine adverts over by itself; nothing can be polled for
    # the absence of a delivery, so give it a fixed time to (wrongly) deliver them.
    time.sleep(HELD_BACK)
    assert received(out) == []

    lab.python(a, POOL_SENDER, a.ifname, "10.0.0.1", source6, leaving.hex())

    @poll
    def all_delivered() -> None:
        packets = received(out)
        assert len(packets) == 4
        for family in (2, 10):
            first, second = [p for p in packets if p["family"] == family]
            # In arrival order, each stamped with when it arrived, not when it was read.
            assert (first["priority"], second["priority"]) == (100, 0)
            assert float(first["waited"]) >= HELD_BACK
            assert 0 <= float(second["waited"]) < HELD_BACK

    all_delivered()
