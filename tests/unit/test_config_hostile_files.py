"""Hostile files behind a configuration path or an include: a device that never ends, a FIFO
with no writer, a file past the size limit. Each is refused at its include line with the
reason, and nothing hangs or reads without bound.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vipkeeper.config import parser
from vipkeeper.config.load import load_config, parse_text


def errors_of(result: object) -> list[str]:
    return [d.format() for d in result.errors]  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_an_include_of_an_endless_device_is_refused_not_read(tmp_path: Path) -> None:
    result = parse_text("include /dev/zero\n", str(tmp_path / "keepalived.conf"))
    assert result.config is None
    assert any("/dev/zero" in e and "not a regular file" in e and ":1:" in e
               for e in errors_of(result)), errors_of(result)  # fmt: skip


@pytest.mark.timeout(30)
def test_a_fifo_with_no_writer_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.conf"
    os.mkfifo(fifo)
    result = load_config(str(fifo))
    assert result.config is None
    assert any("not a regular file" in e for e in errors_of(result)), errors_of(result)


def test_a_file_past_the_size_limit_is_refused_with_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parser, "MAX_SOURCE_BYTES", 1024)
    big = tmp_path / "big.conf"
    big.write_text("# padding\n" * 200)
    result = parse_text(f"include {big}\n", str(tmp_path / "keepalived.conf"))
    assert any("larger than" in e and str(big) in e for e in errors_of(result)), errors_of(result)


def test_a_file_at_the_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser, "MAX_SOURCE_BYTES", 2000)
    exact = tmp_path / "exact.conf"
    exact.write_text("# padding\n" * 200)
    assert exact.stat().st_size == 2000
    result = load_config(str(exact))
    assert not result.errors, errors_of(result)
