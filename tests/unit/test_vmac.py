"""use_vmac's adapter without a kernel: the virtual MAC, and what a kernel without macvlan gets."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from vipkeeper.core.vrrp_wire import virtual_mac
from vipkeeper.io import vmac as vmac_module
from vipkeeper.io.vmac import Vmac, VmacError, VmacManager


def test_virtual_mac_is_the_rfc_prefix_and_the_vrid_in_hex() -> None:
    assert virtual_mac(1) == "00:00:5e:00:01:01"
    assert virtual_mac(51) == "00:00:5e:00:01:33"
    assert virtual_mac(255) == "00:00:5e:00:01:ff"


class Link(dict[str, Any]):
    def get_attr(self, name: str) -> None:
        return None


class NoMacvlanRoute:
    """AsyncIPRoute on a kernel without the macvlan driver: the base exists, adding fails."""

    added: list[dict[str, Any]] = []

    async def __aenter__(self) -> NoMacvlanRoute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def link(self, command: str, **kwargs: Any) -> list[Link]:
        if command == "get":
            if kwargs["ifname"] == "eth0":
                return [Link(index=2)]
            raise NetlinkError(errno.ENODEV)
        if command == "add":
            self.added.append(kwargs)
            raise NetlinkError(errno.EOPNOTSUPP)
        raise AssertionError(f"unexpected link {command}")


async def test_a_kernel_without_macvlan_gets_a_clear_error_and_nothing_is_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(vmac_module, "AsyncIPRoute", NoMacvlanRoute)
    manager = VmacManager(proc_sys=tmp_path)
    wanted = Vmac(name="vrrp.51", base="eth0", mac=virtual_mac(51))
    with pytest.raises(VmacError) as raised:
        await manager.create(wanted)
    assert str(raised.value) == (
        "use_vmac: cannot create vrrp.51 on eth0: this kernel has no macvlan"
        " (CONFIG_MACVLAN; try: modprobe macvlan)"
    )
    assert NoMacvlanRoute.added[-1] == {
        "ifname": "vrrp.51",
        "kind": "macvlan",
        "link": 2,
        "macvlan_mode": "private",
        "address": "00:00:5e:00:01:33",
    }
    assert manager.created == {}
    assert list(tmp_path.iterdir()) == []  # no sysctl written
