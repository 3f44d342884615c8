"""`vipkeeper run`'s command line: keepalived's spelling of the options it shares."""

from __future__ import annotations

from vipkeeper.cli import build_parser


def test_dont_release_ipvs_is_off_by_default_and_spelled_as_keepalived_spells_it() -> None:
    assert build_parser().parse_args(["run"]).release_ipvs is True
    for argv in (["run", "-I"], ["run", "--dont-release-ipvs"]):
        assert build_parser().parse_args(argv).release_ipvs is False
