"""The nftables backend's test doubles and readers: a service and its real servers, a recording
runner, a static link layer, and readers that pick a rendered script apart."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from vipkeeper.core.lb import RealServer, VirtualService
from vipkeeper.io.lb_nftables import StaticLinkLayer

VIP = "172.16.9.1"
RS1 = RealServer(address="192.168.0.54", port=80)
RS2 = RealServer(address="192.168.0.55", port=80)
DIRECTOR_MAC = "02:00:00:00:00:53"
MACS = {"192.168.0.54": "02:00:00:00:00:54", "192.168.0.55": "02:00:00:00:00:55"}
DR = VirtualService(address=VIP, port=80, hash_seed=0xCAFE)
# As the configuration layer builds it: both real servers configured at weight 1.
CONFIGURED = dataclasses.replace(
    DR, configured_weights=(("192.168.0.54:80", 1), ("192.168.0.55:80", 1))
)
FLOWS = "flows_tcp_172_16_9_1_80"


class RecordingRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> str:
        self.calls.append((tuple(argv), stdin))
        return ""


def link_layer(neighbours: dict[str, str] | None = None) -> StaticLinkLayer:
    return StaticLinkLayer(
        devices={"192.168.0.54": "srv0", "192.168.0.55": "srv0", "192.168.0.99": "srv0"},
        device_macs={"srv0": DIRECTOR_MAC},
        neighbours=MACS if neighbours is None else neighbours,
    )


def map_elements(script: str, name: str) -> dict[int, str]:
    match = re.search(rf"map {name} {{.*?elements = {{ (.*?) }}", script, re.S)
    assert match, f"map {name} missing"
    pairs = (element.split(" : ") for element in match.group(1).split(", "))
    return {int(bucket): value for bucket, value in pairs}


def pinned(script: str) -> dict[str, str]:
    """The pinned-flow vmap of service vs0, followed to the real servers: token -> the MAC of
    the server its chain forwards to."""
    match = re.search(r"map vs0_pinned {.*?elements = { (.*?) }", script, re.S)
    if match is None:
        return {}
    pairs = (element.split(" : ") for element in match.group(1).split(", "))
    found = {}
    for token, verdict in pairs:
        rs = chain_body(script, verdict.removeprefix("goto "))
        assert f"ether saddr set {token} update" in rs  # the chain pins flows with this token
        mac = re.search(r"ether daddr set (\S+)", rs)
        assert mac, rs
        found[token] = mac.group(1)
    return found


def pinned_macs(script: str) -> set[str]:
    return set(pinned(script).values())


def chain_body(script: str, name: str) -> str:
    match = re.search(rf"chain {name} {{\n(.*?)\n  }}", script, re.S)
    assert match, f"chain {name} missing"
    return match.group(1)
