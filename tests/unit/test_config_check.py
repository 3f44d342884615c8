"""`vipkeeper check`: exit codes, message shape, the keepalived sample corpus, and fuzzing."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vipkeeper.cli import main
from vipkeeper.config import parse_text
from vipkeeper.config.check import run_check
from vipkeeper.testing.corpus import keepalived_samples_dir

DATA = Path(__file__).parent / "data" / "config"
MESSAGE = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): (warning|error): \S")
SUMMARY = re.compile(r"^.+: \d+ errors?, \d+ warnings?: (usable|not usable)$")


REPO_ROOT = Path(__file__).resolve().parents[2]


def samples_dir() -> Path:
    return keepalived_samples_dir(REPO_ROOT)


def sample_files() -> list[Path]:
    directory = samples_dir()
    if not directory.is_dir():
        reason = (
            f"keepalived sample corpus not found at {directory}"
            " (set VIPKEEPER_SAMPLES_DIR to its location)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    files = sorted(path for path in directory.glob("keepalived.conf*") if path.is_file())
    assert files, f"no keepalived.conf* files in {directory}"
    return files


def check(path: str) -> tuple[int, list[str]]:
    stream = io.StringIO()
    code = run_check(path, stream)
    return code, stream.getvalue().splitlines()


def test_every_keepalived_sample_checks_without_crashing_and_with_located_messages() -> None:
    for path in sample_files():
        code, lines = check(str(path))
        assert code in (0, 1), path
        *messages, summary = lines
        assert SUMMARY.match(summary), summary
        for message in messages:
            match = MESSAGE.match(message)
            assert match, message
            assert Path(match["file"]).resolve() == path.resolve()
        assert code == (0 if "0 errors" in summary else 1)


def test_vrrp_sample_warns_about_smtp_alert_and_is_usable() -> None:
    path = next(p for p in sample_files() if p.name == "keepalived.conf.vrrp")
    code, lines = check(str(path))
    assert code == 0
    assert any(
        line.endswith("warning: smtp_alert: e-mail alerts are not supported, ignored")
        for line in lines
    )


def test_clean_configuration_exits_zero_with_only_a_summary() -> None:
    code, lines = check(str(DATA / "director.conf"))
    assert (code, len(lines)) == (0, 1)
    assert lines[0].endswith(": 0 errors, 0 warnings: usable")


def test_configuration_with_an_error_exits_one(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("vrrp_instance V {\n interface eth0\n virtual_router_id 0\n}\n")
    code, lines = check(str(path))
    assert code == 1
    assert f"{path}:3:20: error: virtual_router_id: 0 is out of range; valid: 1..255" in lines
    assert lines[-1].endswith("not usable")


def test_missing_file_exits_one_with_a_file_level_message(tmp_path: Path) -> None:
    code, lines = check(str(tmp_path / "nope.conf"))
    assert code == 1
    missing = tmp_path / "nope.conf"
    assert lines[0] == f"{missing}: error: cannot read {missing}: No such file or directory"


def test_cli_check_command_uses_the_same_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "warn.conf"
    path.write_text("global_defs {\n enable_traps\n}\n")
    assert main(["check", "-f", str(path)]) == 0
    assert "warning: enable_traps: SNMP is not supported, ignored" in capsys.readouterr().err


KEYWORDISH = st.sampled_from(
    [
        "vrrp_instance",
        "VI_1",
        "{",
        "}",
        "priority",
        "255",
        "virtual_ipaddress",
        "10.0.0.1/24",
        "include",
        "*",
        '"',
        "'",
        "#",
        "!",
        "\n",
        " ",
        "\t",
        "real_server",
        "HTTP_GET",
        "url",
        "virtual_server",
        "fwmark",
        "group",
        "@x",
        "$A=1",
        "track_script",
        "weight",
        "-300",
        "authentication",
        "auth_type",
        "PASS",
        "advert_int",
        "0.001",
        "version",
        "3",
        "::1",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    result = parse_text(text, "fuzz.conf")
    assert all(item.file == "fuzz.conf" for item in result.diagnostics)
    assert (result.config is None) == any(item.is_error for item in result.diagnostics)


@settings(max_examples=300, deadline=None)
@given(st.lists(KEYWORDISH, max_size=80).map(" ".join))
def test_keyword_soup_never_raises(text: str) -> None:
    result = parse_text(text, "soup.conf")
    assert (result.config is None) == any(item.is_error for item in result.diagnostics)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_samples_never_raise(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(sample_files()))
    text = path.read_text(encoding="utf-8", errors="replace")
    position = data.draw(st.integers(min_value=0, max_value=len(text)))
    cut = data.draw(st.integers(min_value=0, max_value=40))
    insert = data.draw(st.one_of(st.text(max_size=20), KEYWORDISH))
    mutated = text[:position] + insert + text[position + cut :]
    result = parse_text(mutated, str(path))
    for item in result.diagnostics:
        assert MESSAGE.match(item.format()), item
