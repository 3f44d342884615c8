"""`vipkeeper run`'s command line: keepalived's spelling of the options it shares."""

from __future__ import annotations

import pytest

from vipkeeper.cli import build_parser


def test_dont_release_ipvs_is_off_by_default_and_spelled_as_keepalived_spells_it() -> None:
    assert build_parser().parse_args(["run"]).release_ipvs is True
    for argv in (["run", "-I"], ["run", "--dont-release-ipvs"]):
        assert build_parser().parse_args(argv).release_ipvs is False


def test_help_is_as_wide_as_columns_says(monkeypatch: pytest.MonkeyPatch) -> None:
    def widest_line(columns: str) -> int:
        monkeypatch.setenv("COLUMNS", columns)
        return max(len(line) for line in build_parser().format_help().splitlines())

    # argparse keeps a margin of two columns; the description is 75 characters long
    assert widest_line("60") <= 58
    assert 60 < widest_line("120") <= 118
