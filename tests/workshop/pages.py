"""Reading the workshop pages as the suite runs them: `sh` blocks (commands to type), `sh
interactive` blocks (commands that run until Ctrl-C), and `output` blocks (what the attendee
should see after the block before), with placeholders for what varies.

Placeholders in an output block: <mac>, <n> (a number), <time> (HH:MM:SS), <...> (anything).
An output block matches when each of its lines matches a line of the output, in order (other
lines may come between); runs of spaces count as one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

PLACEHOLDERS = {
    "<mac>": r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}",
    "<n>": r"-?\d+(?:\.\d+)?",
    "<time>": r"\d{2}:\d{2}:\d{2}",
    "<...>": r".*?",
}
_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)


@dataclass(frozen=True, kw_only=True)
class Block:
    script: str  # the commands, as one bash script
    interactive: bool
    expected: str | None  # the output block after it, if any
    line: int  # where the block starts in the page


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found: list[Block] = []
    pending: tuple[str, bool, int] | None = None
    for match in _FENCE.finditer(text):
        info, body = match["info"].split(), match["body"]
        line = text.count("\n", 0, match.start()) + 1
        kind = info[0] if info else ""
        if kind == "sh":
            if pending:
                found.append(Block(script=pending[0], interactive=pending[1], expected=None,
                                   line=pending[2]))  # fmt: skip
            pending = (body, "interactive" in info[1:], line)
        elif kind == "output":
            if pending is None:
                raise ValueError(f"{page}:{line}: an output block with no sh block before it")
            found.append(Block(script=pending[0], interactive=pending[1], expected=body,
                               line=pending[2]))  # fmt: skip
            pending = None
    if pending:
        found.append(Block(script=pending[0], interactive=pending[1], expected=None,
                           line=pending[2]))  # fmt: skip
    return found


def commands(script: str) -> list[list[str]]:
    """The commands of a script as argv lists, without here-document bodies and comments."""
    argvs: list[list[str]] = []
    heredoc_end: str | None = None
    for raw in script.splitlines():
        if heredoc_end is not None:
            if raw.strip() == heredoc_end:
                heredoc_end = None
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if marker:
            heredoc_end = marker.group(1)
            line = line[: marker.start()]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        redirect = False
        for token in lexer:
            if token in ("|", "||", "&&", ";", "&"):
                if argv:
                    argvs.append(argv)
                argv = []
            elif token.startswith((">", "<")):
                redirect = True  # the next token is the redirection's file
            elif redirect:
                redirect = False
            else:
                argv.append(token)
        if argv:
            argvs.append(argv)
    return argvs


def _pattern(line: str) -> re.Pattern[str]:
    parts = re.split(r"(<mac>|<n>|<time>|<\.\.\.>)", " ".join(line.split()))
    regex = "".join(PLACEHOLDERS.get(p, re.escape(p)) for p in parts)
    return re.compile(regex)


def mismatch(expected: str, actual: str) -> str | None:
    """None when every expected line matches an actual line, in order; else which did not."""
    lines = [" ".join(line.split()) for line in actual.splitlines()]
    at = 0
    for want in (w for w in expected.splitlines() if w.strip()):
        pattern = _pattern(want)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return f"no line matching {want!r} (in order) in:\n{actual}"
        at += 1
    return None
