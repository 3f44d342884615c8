"""The choice between the IPVS and nftables data planes, and how it is reported."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vipkeeper.config import parse_text
from vipkeeper.config.check import run_check
from vipkeeper.director import describe_data_plane
from vipkeeper.io import lb_backend
from vipkeeper.io.lb_backend import BackendKind, data_plane_choice, select_backend


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    async def apply(self, desired: object) -> None: ...

    async def clear(self) -> None: ...


@pytest.fixture
def with_ipvs(tmp_path: Path) -> Path:
    proc = tmp_path / "ip_vs"
    proc.write_text("IP Virtual Server version 1.2.1\n")
    return proc


@pytest.fixture
def without_ipvs(tmp_path: Path) -> Path:
    return tmp_path / "missing"


def choose(kind: BackendKind, proc: Path) -> str:
    backend = select_backend(
        kind, make_ipvs=lambda: Named("ipvs"), make_nftables=lambda: Named("nftables"),
        proc_ip_vs=proc,
    )  # fmt: skip
    return backend.name


def test_auto_takes_ipvs_where_the_kernel_has_it(with_ipvs: Path, without_ipvs: Path) -> None:
    assert choose("auto", with_ipvs) == "ipvs"
    assert choose("auto", without_ipvs) == "nftables"
    assert choose("nftables", with_ipvs) == "nftables"


def test_asking_for_ipvs_without_it_is_an_error(without_ipvs: Path) -> None:
    with pytest.raises(RuntimeError, match="load ip_vs"):
        choose("ipvs", without_ipvs)


@pytest.mark.parametrize(
    ("kind", "has_ipvs", "phrase"),
    [
        ("auto", True, "ipvs (auto: this kernel has IPVS)"),
        ("auto", False, "nftables (auto: this kernel has no IPVS"),
        ("ipvs", True, "ipvs (lvs_backend ipvs)"),
        ("ipvs", False, "none: lvs_backend ipvs, but this kernel has no IPVS"),
        ("nftables", True, "nftables (lvs_backend nftables)"),
    ],
)
def test_the_reported_choice_matches_the_backend_built(
    kind: BackendKind, has_ipvs: bool, phrase: str, with_ipvs: Path, without_ipvs: Path
) -> None:
    proc = with_ipvs if has_ipvs else without_ipvs
    described = data_plane_choice(kind, proc)
    assert described.startswith(phrase), described
    if not described.startswith("none"):
        assert described.split()[0] == choose(kind, proc)


def test_check_prints_the_data_plane_of_a_configuration_with_virtual_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_ipvs: Path
) -> None:
    monkeypatch.setattr(lb_backend, "PROC_IP_VS", without_ipvs)
    monkeypatch.setattr(
        "vipkeeper.director.data_plane_choice",
        lambda kind: data_plane_choice(kind, without_ipvs),
    )
    conf = tmp_path / "keepalived.conf"
    conf.write_text("virtual_server 10.0.0.1 80 {\n    real_server 10.0.1.1 80 {\n    }\n}\n")
    out = io.StringIO()
    assert run_check(str(conf), out, describe=describe_data_plane) == 0
    assert out.getvalue().splitlines()[-1] == (
        f"{conf}: LVS data plane nftables (auto: this kernel has no IPVS, {without_ipvs} is"
        " missing; modprobe ip_vs)"
    )


def test_check_says_nothing_of_a_data_plane_without_virtual_servers() -> None:
    result = parse_text("global_defs {\n    router_id a\n}\n")
    assert result.config is not None
    assert describe_data_plane(result.config) is None
