"""vipkeeper.io.addresses inside a namespace: VIPs appear and disappear as ordered, with label
and scope, idempotently, and the primary address is the one VRRP must send from. Every check
reads the kernel's state with `ip`, not with the code under test."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vipkeeper.testing.netns import Host, Lab

pytestmark = pytest.mark.netns

SCRIPT = """
import asyncio, json, socket, sys
from vipkeeper.core.virtual_address import VirtualAddress
from vipkeeper.io.addresses import AddressManager

async def main(operation, vips):
    vips = [VirtualAddress(**v) for v in json.loads(vips)]
    async with AddressManager() as manager:
        if operation == "add":
            result = [await manager.add_if_missing(v) for v in vips]
        elif operation == "add_known_index":  # the quick rtnetlink path (index cached)
            for v in vips:
                await manager.ifindex(v.dev)
            result = [await manager.add_if_missing(v) for v in vips]
        elif operation == "add_now":  # the takeover's no-wait add (index looked up first)
            for v in vips:
                await manager.ifindex(v.dev)
            result = [manager.add_now(v) for v in vips]
        elif operation == "add_not_cached":  # the index looked up first
            result = []
            for v in vips:
                manager.forget(v.dev)
                result.append(await manager.add_if_missing(v))
        elif operation == "add_through_pyroute2":  # the reference: pyroute2's own encoding
            from pyroute2.iproute.linux import AsyncIPRoute
            from vipkeeper.io.addresses import IFA_F_NODAD, scope_number
            result = []
            async with AsyncIPRoute() as ipr:
                for v in vips:
                    (index,) = await ipr.link_lookup(ifname=v.dev)
                    request = {"index": index, "address": v.address, "prefixlen": v.prefixlen}
                    if ":" in v.address:
                        request.update(family=socket.AF_INET6, flags=IFA_F_NODAD)
                    else:
                        request["family"] = socket.AF_INET
                        if v.label is not None:
                            request["label"] = v.label
                    if v.scope is not None:
                        request["scope"] = scope_number(v.scope)
                    await ipr.addr("add", **request)
                    result.append(True)
        elif operation == "remove":
            result = [await manager.delete_if_present(v) for v in vips]
        elif operation == "add_plain":
            result = [await manager.add(v) for v in vips]
        elif operation == "delete_plain":
            result = [await manager.delete(v) for v in vips]
        elif operation == "remove_stale":
            result = [v.address for v in await manager.remove_stale(vips)]
        elif operation == "primary":
            result = [
                await manager.primary_address(vips[0].dev, socket.AF_INET),
                await manager.primary_address(vips[0].dev, socket.AF_INET6),
            ]
    print(json.dumps(result))

asyncio.run(main(*sys.argv[1:]))
"""


def call(lab: Lab, host: Host, operation: str, *vips: dict[str, Any]) -> Any:
    result = lab.python(host, SCRIPT, operation, json.dumps(list(vips)))
    return json.loads(result.stdout)


def kernel_addresses(lab: Lab, host: Host) -> dict[str, dict[str, Any]]:
    info = json.loads(lab.run(host, "ip", "-j", "addr", "show", "dev", host.ifname).stdout)
    return {a["local"]: a for entry in info for a in entry["addr_info"]}


@pytest.fixture
def host(lab: Lab) -> Host:
    return lab.add_host("a", ["10.0.0.1/24"])


def test_vip_is_added_with_prefix_label_and_scope(lab: Lab, host: Host) -> None:
    vip = {"address": "10.0.0.100", "prefixlen": 24, "dev": "eth0", "label": "eth0:vip"}
    link_vip = {"address": "169.254.7.7", "prefixlen": 16, "dev": "eth0", "scope": "link"}

    assert call(lab, host, "add", vip, link_vip) == [True, True]

    present = kernel_addresses(lab, host)
    assert present["10.0.0.100"]["prefixlen"] == 24
    assert present["10.0.0.100"]["label"] == "eth0:vip"
    assert present["10.0.0.100"].get("secondary") is True
    assert present["169.254.7.7"]["scope"] == "link"


def test_every_add_gives_the_kernel_what_pyroute2_gives_it(lab: Lab, host: Host) -> None:
    vips = (
        {"address": "10.0.0.100", "prefixlen": 24, "dev": "eth0", "label": "eth0:vip"},
        {"address": "169.254.7.7", "prefixlen": 16, "dev": "eth0", "scope": "link"},
        {"address": "2001:db8::100", "prefixlen": 64, "dev": "eth0"},
    )
    assert call(lab, host, "add_through_pyroute2", *vips) == [True, True, True]
    through_pyroute2 = kernel_addresses(lab, host)
    assert call(lab, host, "remove", *vips) == [True, True, True]

    assert call(lab, host, "add_not_cached", *vips) == [True, True, True]
    assert kernel_addresses(lab, host) == through_pyroute2
    assert call(lab, host, "remove", *vips) == [True, True, True]

    assert call(lab, host, "add_known_index", *vips) == [True, True, True]
    assert kernel_addresses(lab, host) == through_pyroute2
    assert call(lab, host, "add_known_index", *vips) == [False, False, False]
    assert call(lab, host, "remove", *vips) == [True, True, True]

    assert call(lab, host, "add_now", *vips) == [True, True, True]
    assert kernel_addresses(lab, host) == through_pyroute2
    assert call(lab, host, "add_now", *vips) == [False, False, False]


def test_adding_a_present_vip_again_is_not_an_error(lab: Lab, host: Host) -> None:
    vip = {"address": "10.0.0.100", "prefixlen": 32, "dev": "eth0"}
    assert call(lab, host, "add", vip) == [True]

    assert call(lab, host, "add", vip) == [False]
    assert list(kernel_addresses(lab, host)).count("10.0.0.100") == 1


def test_removing_vips_takes_them_off_and_a_second_remove_is_not_an_error(
    lab: Lab, host: Host
) -> None:
    v4 = {"address": "10.0.0.100", "prefixlen": 32, "dev": "eth0"}
    v6 = {"address": "fd00::100", "prefixlen": 64, "dev": "eth0"}
    assert call(lab, host, "add", v4, v6) == [True, True]
    assert {"10.0.0.100", "fd00::100"} <= set(kernel_addresses(lab, host))

    assert call(lab, host, "remove", v4, v6) == [True, True]
    assert not {"10.0.0.100", "fd00::100"} & set(kernel_addresses(lab, host))
    assert call(lab, host, "remove", v4, v6) == [False, False]
    assert "10.0.0.1" in kernel_addresses(lab, host)


def test_plain_add_and_delete_are_idempotent(lab: Lab, host: Host) -> None:
    vip = {"address": "10.0.0.100", "prefixlen": 32, "dev": "eth0"}
    missing_dev = {"address": "10.0.0.100", "prefixlen": 32, "dev": "missing0"}

    assert call(lab, host, "add_plain", vip, vip) == [None, None]
    assert "10.0.0.100" in kernel_addresses(lab, host)
    assert call(lab, host, "delete_plain", vip, vip, missing_dev) == [None, None, None]
    assert "10.0.0.100" not in kernel_addresses(lab, host)


def test_ipv6_vip_skips_duplicate_address_detection(lab: Lab, host: Host) -> None:
    lab.run(host, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad=1")
    call(lab, host, "add", {"address": "fd00::100", "prefixlen": 64, "dev": "eth0"})

    entry = kernel_addresses(lab, host)["fd00::100"]
    assert entry.get("nodad") is True
    assert not entry.get("tentative")


def test_remove_stale_clears_leftovers_and_reports_only_those(lab: Lab, host: Host) -> None:
    lab.run(host, "ip", "addr", "add", "10.0.0.100/32", "dev", "eth0")  # a crashed run's VIP
    configured = [
        {"address": "10.0.0.100", "prefixlen": 32, "dev": "eth0"},
        {"address": "10.0.0.101", "prefixlen": 32, "dev": "eth0"},
        {"address": "10.0.0.102", "prefixlen": 32, "dev": "missing0"},
    ]

    assert call(lab, host, "remove_stale", *configured) == ["10.0.0.100"]
    assert "10.0.0.100" not in kernel_addresses(lab, host)


def test_primary_address_is_first_ipv4_non_secondary_and_ipv6_link_local(
    lab: Lab, host: Host
) -> None:
    lab.run(host, "ip", "addr", "add", "10.0.0.50/24", "dev", "eth0")  # secondary
    lab.run(host, "ip", "addr", "add", "fd00::1/64", "dev", "eth0", "nodad")
    link_local = next(
        a for a, entry in kernel_addresses(lab, host).items() if entry["scope"] == "link"
    )

    assert call(lab, host, "primary", {"address": "0.0.0.0", "prefixlen": 0, "dev": "eth0"}) == [
        "10.0.0.1",
        link_local,
    ]
