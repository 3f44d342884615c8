"""The workshop pages, without the lab: every exercise has its page and checker, every
command a page asks for exists (a make target, a harness command, a lab service, a program),
every page has the parts an exercise needs, and the output matcher both accepts what varies
and refuses what differs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from harness.exercises import CHECKERS, exercises
from harness.topology import lab_topology
from tests.workshop.pages import blocks, commands, mismatch

ROOT = lab_topology().root
PAGES = [ex.page for ex in exercises(ROOT)]
SECTIONS = ("**Goal.**", "## Background", "## Steps", "## Check")


def _ids(pages: list[Path]) -> list[str]:
    return [p.stem for p in pages]


def test_there_are_at_least_seven_exercises_each_with_a_page_and_a_checker() -> None:
    numbers = [ex.number for ex in exercises(ROOT)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 7
    assert set(numbers) == set(CHECKERS)


def test_make_exercise_lists_them_one_line_each_starting_with_its_number() -> None:
    out = subprocess.run(
        ["make", "-s", "exercise"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [int(line.split(".")[0]) for line in listed] == [ex.number for ex in exercises(ROOT)]
    for line, ex in zip(listed, exercises(ROOT), strict=True):
        assert ex.title in line


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_page_has_goal_background_steps_check(page: Path) -> None:
    text = page.read_text()
    for section in SECTIONS:
        assert section in text, f"{page.name}: no {section}"
    number = int(page.name[:2])
    scripts = [b.script for b in blocks(page)]
    assert any(f"make check EX={number}" in s for s in scripts), f"{page.name}: no check step"
    assert any(b.expected for b in blocks(page)), f"{page.name}: no 'what you should see'"


@cache
def _make_targets_exist(args: tuple[str, ...]) -> str | None:
    dry = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
    return None if dry.returncode == 0 else f"make {' '.join(args)}: {dry.stderr.strip()}"


@cache
def _harness_command_exists(sub: str) -> str | None:
    help_ = subprocess.run(
        [sys.executable, "-m", "harness", sub, "--help"], cwd=ROOT, capture_output=True
    )
    return None if help_.returncode == 0 else f"no harness command {sub!r}"


def problem(argv: list[str]) -> str | None:
    """Why this command cannot work as written, or None."""
    topo = lab_topology()
    program = argv[0]
    if program == "make":
        return _make_targets_exist(tuple(argv[1:]))
    if "-m" in argv and "harness" in argv:
        return _harness_command_exists(argv[argv.index("harness") + 1])
    if argv[:3] == ["docker", "compose", "exec"]:
        rest = argv[3:]
        while rest and rest[0].startswith("-"):  # options; these take a value
            takes_value = rest[0] in ("-e", "--env", "-u", "--user", "-w", "--workdir")
            rest = rest[2:] if takes_value else rest[1:]
        service = rest[0] if rest else ""
        return None if service in topo.services else f"no lab service {service!r}"
    if program == "docker":
        return None if len(argv) > 1 and argv[1] in ("run", "ps", "logs") else f"{argv}"
    if program.startswith(".venv/") or "/" in program:
        return None if (ROOT / program).exists() else f"{program} does not exist"
    return None if shutil.which(program) else f"{program} is not installed"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_command_on_a_page_exists(page: Path) -> None:
    found = [(b.line, argv) for b in blocks(page) for argv in commands(b.script)]
    assert found
    problems = [f"line {line}: {why}" for line, argv in found if (why := problem(argv))]
    assert problems == []


def test_the_command_check_catches_what_does_not_exist() -> None:
    assert problem(["make", "no-such-target"]) is not None
    assert problem([".venv/bin/python", "-m", "harness", "no-such-command"]) is not None
    assert problem(["docker", "compose", "exec", "dir9", "true"]) is not None
    assert problem(["docker", "compose", "exec", "-e", "COLUMNS=9", "dir9", "true"]) is not None
    assert problem(["docker", "compose", "exec", "-e", "COLUMNS=9", "dir1", "true"]) is None
    assert problem(["no-such-program-here"]) is not None
    assert problem(["make", "check", "EX=1"]) is None


def test_commands_skip_heredoc_bodies_and_split_pipes() -> None:
    script = "mkdir -p x\ncat > x/a.py <<'PY'\nimport os\nPY\nls x | sort && echo done\n"
    assert commands(script) == [["mkdir", "-p", "x"], ["cat"], ["ls", "x"], ["sort"],
                                ["echo", "done"]]  # fmt: skip


def test_the_output_matcher_allows_what_varies_and_nothing_else() -> None:
    expected = "VIP <...> held by: dir1\n<n>: eth0 inet 172.16.9.1/16 <...>\n<mac>\n"
    actual = (
        "noise\nVIP 172.16.9.1   held by: dir1\nmore noise\n"
        "3: eth0    inet 172.16.9.1/16 scope global eth0\n02:42:ac:10:00:35\n"
    )
    assert mismatch(expected, actual) is None
    assert mismatch(expected, actual.replace("dir1", "dir2")) is not None
    assert mismatch(expected, actual.replace("02:42:ac:10:00:35", "dir1")) is not None
    # In order: a line found earlier does not count.
    assert mismatch("b\na\n", "a\nb\n") is not None
