"""The IPVS backend against the real kernel: what `apply()` sends is what `ipvsadm -Ln` shows.

One namespace for the module, no daemon: every scheduler vipkeeper offers (rr, wrr, lc, wlc, sh,
mh, with and without the port/fallback flags), both forwarding methods, weights, persistence and
a fwmark service, then an update, a removal and `clear()`. A namespace without any IPv4
address refuses every real server (the kernel routes each address there as broadcast): the
backend says so. Each test is one coroutine: a backend's netlink socket belongs to the event
loop that opened it.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import ipvsadm
import pyroute2.config
import pytest
from guestnet import GUEST_BOUND

from vipkeeper.core.lb import (
    ForwardingMethod,
    RealServer,
    Scheduler,
    SchedulerFlag,
    VirtualServer,
    VirtualService,
)
from vipkeeper.io.lb_ipvs import IpvsBackend, IpvsError

VIP = "172.16.9.1"
RS1 = RealServer(address="192.168.0.54", port=80, weight=3)
RS2 = RealServer(address="192.168.0.55", port=80, weight=1)
RS2_DOWN = RealServer(address="192.168.0.55", port=80, weight=0)

# port -> (scheduler, flags, method, persistence): each row one service on the VIP.
MATRIX = {
    1001: (Scheduler.ROUND_ROBIN, frozenset(), ForwardingMethod.DR, 0),
    1002: (Scheduler.WEIGHTED_ROUND_ROBIN, frozenset(), ForwardingMethod.NAT, 0),
    1003: (Scheduler.LEAST_CONNECTION, frozenset(), ForwardingMethod.DR, 0),
    1004: (Scheduler.WEIGHTED_LEAST_CONNECTION, frozenset(), ForwardingMethod.NAT, 0),
    1005: (Scheduler.SOURCE_HASH, frozenset(), ForwardingMethod.DR, 0),
    1006: (Scheduler.SOURCE_HASH, frozenset({SchedulerFlag.PORT}), ForwardingMethod.DR, 0),
    1007: (Scheduler.MAGLEV_HASH, frozenset(), ForwardingMethod.DR, 0),
    1008: (
        Scheduler.MAGLEV_HASH,
        frozenset({SchedulerFlag.PORT, SchedulerFlag.FALLBACK}),
        ForwardingMethod.DR,
        0,
    ),
    1009: (Scheduler.ROUND_ROBIN, frozenset(), ForwardingMethod.DR, 300),
}
IPVSADM_FORWARD = {ForwardingMethod.DR: "Route", ForwardingMethod.NAT: "Masq"}


def matrix_servers() -> list[VirtualServer]:
    servers = []
    for port, (scheduler, flags, method, persistence) in MATRIX.items():
        service = VirtualService(
            address=VIP,
            port=port,
            scheduler=scheduler,
            scheduler_flags=flags,
            method=method,
            persistence_timeout=persistence,
        )
        real = (
            RealServer(address=RS1.address, port=port, weight=3),
            RealServer(address=RS2.address, port=port, weight=1),
        )
        servers.append(VirtualServer(service=service, real_servers=real))
    return servers


def add_namespace() -> str:
    name = f"vkkernel{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def lo_up(name: str) -> None:
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = add_namespace()
    lo_up(name)  # 127.0.0.1: as on any host, the namespace has a local routing table
    # pyroute2 opens a socket in another namespace through a forked child that must hand the
    # socket back within 2 s (10 s in all): far too short for the emulated guest.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyroute2.config, "default_communicate_timeout", GUEST_BOUND)
        patch.setattr(pyroute2.config, "default_create_socket_timeout", GUEST_BOUND)
        try:
            yield name
        finally:
            subprocess.run(["ip", "netns", "del", name], check=False)


async def test_a_namespace_without_addresses_refuses_real_servers_with_the_cause(
    namespace: str,  # for its longer pyroute2 timeouts
) -> None:
    bare = add_namespace()
    backend = IpvsBackend(netns=bare)
    web = VirtualServer(service=VirtualService(address=VIP, port=80), real_servers=(RS1,))
    try:
        with pytest.raises(IpvsError, match="AddDestination failed") as raised:
            await backend.apply([web])
        assert "without any IPv4 address" in str(raised.value)
        assert list(ipvsadm.table(bare)) == [f"TCP {VIP}:80"]  # the service went in, RS1 not
        lo_up(bare)
        await backend.apply([web])
        assert ipvsadm.table(bare)[f"TCP {VIP}:80"].weights() == {f"{RS1.address}:80": 3}
    finally:
        backend.close()
        subprocess.run(["ip", "netns", "del", bare], check=False)


async def test_kernel_holds_exactly_the_applied_services(namespace: str) -> None:
    backend = IpvsBackend(netns=namespace)
    desired = matrix_servers()
    try:
        await backend.apply(desired)
        held = ipvsadm.table(namespace)
    finally:
        backend.close()
    assert sorted(held) == sorted(f"TCP {VIP}:{port}" for port in MATRIX)
    for port, (scheduler, flags, method, persistence) in MATRIX.items():
        service = held[f"TCP {VIP}:{port}"]
        assert service.scheduler == scheduler.value, port
        assert service.flags == {f"{scheduler.value}-{flag.value}" for flag in flags}, port
        assert service.persistent == (persistence or None), port
        forward = IPVSADM_FORWARD[method]
        assert service.destinations == {
            f"{RS1.address}:{port}": (forward, 3),
            f"{RS2.address}:{port}": (forward, 1),
        }, port


async def test_updates_reach_the_kernel_and_clear_leaves_nothing(namespace: str) -> None:
    backend = IpvsBackend(netns=namespace)
    first = matrix_servers()
    web = VirtualService(address=VIP, port=80, scheduler=Scheduler.MAGLEV_HASH)
    try:
        # A second backend adopts what the first test left (EEXIST -> set), then changes it.
        await backend.apply([*first, VirtualServer(service=web, real_servers=(RS1, RS2))])
        assert ipvsadm.table(namespace)[f"TCP {VIP}:80"].weights() == {
            "192.168.0.54:80": 3,
            "192.168.0.55:80": 1,
        }
        rehashed = VirtualService(
            address=VIP, port=80, scheduler=Scheduler.SOURCE_HASH, persistence_timeout=60
        )
        await backend.apply(
            [*first[1:], VirtualServer(service=rehashed, real_servers=(RS1, RS2_DOWN))]
        )
        held = ipvsadm.table(namespace)
        assert f"TCP {VIP}:1001" not in held
        assert held[f"TCP {VIP}:80"].scheduler == "sh"
        assert held[f"TCP {VIP}:80"].persistent == 60
        assert held[f"TCP {VIP}:80"].weights() == {"192.168.0.54:80": 3, "192.168.0.55:80": 0}
        await backend.clear()
        assert ipvsadm.table(namespace) == {}
    finally:
        backend.close()


async def test_fwmark_service(namespace: str) -> None:
    backend = IpvsBackend(netns=namespace)
    service = VirtualService(fwmark=7, scheduler=Scheduler.WEIGHTED_LEAST_CONNECTION)
    try:
        await backend.apply([VirtualServer(service=service, real_servers=(RS1,))])
        held = ipvsadm.table(namespace)
        assert list(held) == ["FWM 7"]
        assert held["FWM 7"].scheduler == "wlc"
        assert held["FWM 7"].destinations == {"192.168.0.54:80": ("Route", 3)}
        await backend.clear()
        assert ipvsadm.table(namespace) == {}
    finally:
        backend.close()
