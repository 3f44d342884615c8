"""keepalived.conf parser: tokens in, a located statement tree out, with includes spliced in.

Owns the block structure (`keyword args... { ... }`, the `{` may sit on a following line),
and `include PATTERN` (and keepalived's variants includer/includem/includew/includeb/includea):
glob patterns with csh-style braces, relative to the including file's directory, with missing
files and include loops reported at the include line.

It knows nothing about what keywords mean: that is `keywords` (what keepalived knows) and
`build` (what vipkeeper does with it). It never raises on bad input; it is iterative, so deeply
nested garbage cannot exhaust the Python stack. File reading goes through `read_source`, the
only place in the configuration layer that touches the file system.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.config.lexer import INCLUDE_WORDS, Token, TokenKind, tokenize
from vipkeeper.core.records import record

INCLUDE_KEYWORDS = INCLUDE_WORDS
# `includer` is keepalived's "readable" check only: a pattern matching nothing is not an error.
INCLUDE_MAY_MATCH_NOTHING = frozenset({"includer"})
MAX_INCLUDE_DEPTH = 32
MAX_BRACE_EXPANSIONS = 1024
MAX_SOURCE_BYTES = 64 * 2**20  # one configuration file; keepalived's samples are a few KiB


@record
class Statement:
    """One keyword line, with its arguments and, if it opens one, its block of statements."""

    keyword: Token
    args: tuple[Token, ...] = ()
    block: tuple[Statement, ...] | None = None
    block_location: Location | None = None

    @property
    def name(self) -> str:
        return self.keyword.value

    @property
    def location(self) -> Location:
        return self.keyword.location

    def words(self) -> tuple[Token, ...]:
        """The keyword followed by its arguments: how a line inside a list block is read."""
        return (self.keyword, *self.args)


@dataclass
class _Frame:
    """A block being read: its keyword, arguments, brace and statements so far."""

    keyword: Token | None
    args: tuple[Token, ...]
    opened_at: Location | None
    children: list[Statement] = field(default_factory=list)


@dataclass
class ParseContext:
    """Per-load state: diagnostics, the chain of files being read, and every file read."""

    diagnostics: Diagnostics
    files: list[str] = field(default_factory=list)
    _stack: list[str] = field(default_factory=list)


def read_source(path: str, diagnostics: Diagnostics, where: Location | None) -> str | None:
    """Read a configuration file as text; report and return None when it cannot be read.

    Only regular files of at most MAX_SOURCE_BYTES are read: `include /dev/zero` or a FIFO
    would otherwise never end, and a runaway generated file would fill memory.
    """
    at = where if where is not None else Location(file=path, line=0, column=0)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait; nothing is read from one.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            status = os.fstat(handle.fileno())
            if stat.S_ISDIR(status.st_mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(status.st_mode):
                diagnostics.error(at, f"cannot read {path}: not a regular file")
                return None
            raw = handle.read(MAX_SOURCE_BYTES + 1)
        if len(raw) > MAX_SOURCE_BYTES:
            diagnostics.error(
                at, f"cannot read {path}: larger than {MAX_SOURCE_BYTES // 2**20} MiB"
            )
            return None
    except IsADirectoryError:
        diagnostics.error(at, f"cannot read {path}: it is a directory, not a configuration file")
        return None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        diagnostics.error(at, f"cannot read {path}: {reason}")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        diagnostics.error(
            Location(file=path, line=raw[: exc.start].count(b"\n") + 1, column=1),
            f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; save the file as UTF-8",
        )
        return raw.decode("utf-8", errors="replace")


def parse_file(path: str, context: ParseContext, where: Location | None = None) -> list[Statement]:
    """Read, tokenize and parse `path`, splicing in its includes."""
    real = os.path.realpath(path)
    text = read_source(path, context.diagnostics, where)
    if text is None:
        return []
    context.files.append(path)
    context._stack.append(real)
    try:
        return parse_text_tree(text, path, context)
    finally:
        context._stack.pop()


def parse_text_tree(text: str, filename: str, context: ParseContext) -> list[Statement]:
    """Parse already-read text named `filename` (includes resolve relative to its directory)."""
    tokens = tokenize(text, filename, context.diagnostics)
    return _Parser(tokens, filename, context).run()


class _Parser:
    def __init__(self, tokens: list[Token], filename: str, context: ParseContext) -> None:
        self.tokens = tokens
        self.filename = filename
        self.context = context
        self.diagnostics = context.diagnostics

    def run(self) -> list[Statement]:
        root = _Frame(keyword=None, args=(), opened_at=None)
        frames = [root]
        pending: list[Token] = []
        index = 0
        count = len(self.tokens)
        while index < count:
            token = self.tokens[index]
            if token.kind is TokenKind.WORD:
                pending.append(token)
                index += 1
            elif token.kind is TokenKind.NEWLINE:
                if pending:
                    following = self._next_significant(index)
                    if following < count and self.tokens[following].kind is TokenKind.OPEN:
                        index = following  # `keyword` on one line, `{` on a later one
                        continue
                    self._finish(frames[-1], pending)
                    pending = []
                index += 1
            elif token.kind is TokenKind.OPEN:
                if pending:
                    frames.append(
                        _Frame(
                            keyword=pending[0], args=tuple(pending[1:]), opened_at=token.location
                        )
                    )
                else:
                    self.diagnostics.error(
                        token.location, "'{' with no keyword before it: a block needs a keyword"
                    )
                    frames.append(_Frame(keyword=None, args=(), opened_at=token.location))
                pending = []
                index += 1
            else:  # CLOSE
                if pending:
                    self._finish(frames[-1], pending)
                    pending = []
                if len(frames) == 1:
                    self.diagnostics.error(
                        token.location, "'}' does not close any block: remove it or add the '{'"
                    )
                else:
                    self._close(frames)
                index += 1
        if pending:
            self._finish(frames[-1], pending)
        while len(frames) > 1:
            frame = frames[-1]
            name = frame.keyword.value if frame.keyword is not None else "'{'"
            if frame.opened_at is not None:
                self.diagnostics.error(
                    frame.opened_at,
                    f"block of {name} is never closed: add a '}}' before the end of the file",
                )
            self._close(frames)
        return root.children

    def _next_significant(self, index: int) -> int:
        while index < len(self.tokens) and self.tokens[index].kind is TokenKind.NEWLINE:
            index += 1
        return index

    def _close(self, frames: list[_Frame]) -> None:
        frame = frames.pop()
        if frame.keyword is None:
            return  # an anonymous block was already reported; its contents are dropped
        frames[-1].children.append(
            Statement(
                keyword=frame.keyword,
                args=frame.args,
                block=tuple(frame.children),
                block_location=frame.opened_at,
            )
        )

    def _finish(self, frame: _Frame, words: list[Token]) -> None:
        keyword = words[0]
        if not keyword.quoted and keyword.value in INCLUDE_KEYWORDS:
            frame.children.extend(self._include(keyword, tuple(words[1:])))
            return
        frame.children.append(Statement(keyword=keyword, args=tuple(words[1:])))

    def _include(self, keyword: Token, args: tuple[Token, ...]) -> list[Statement]:
        if len(args) != 1:
            self.diagnostics.error(
                keyword.location,
                f"{keyword.value} takes exactly one file name or glob pattern, got {len(args)}",
            )
            if not args:
                return []
        pattern = args[0].value
        base = os.path.dirname(self.filename)
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        paths = _glob_paths(full)
        if not paths:
            if keyword.value not in INCLUDE_MAY_MATCH_NOTHING:
                import glob

                what = "matches no file" if glob.has_magic(full) else "does not exist"
                self.diagnostics.error(
                    args[0].location,
                    f"{keyword.value} {pattern}: {full} {what}"
                    " (relative paths are relative to the including file's directory;"
                    " use includer for optional files)",
                )
            return []
        statements: list[Statement] = []
        for path in paths:
            if os.path.isdir(path):
                continue
            real = os.path.realpath(path)
            if real in self.context._stack:
                chain = " -> ".join([*self.context._stack, real])
                self.diagnostics.error(
                    args[0].location, f"include loop: {chain}; remove one of these includes"
                )
                continue
            if len(self.context._stack) >= MAX_INCLUDE_DEPTH:
                self.diagnostics.error(
                    args[0].location,
                    f"includes nested more than {MAX_INCLUDE_DEPTH} files deep",
                )
                continue
            statements.extend(parse_file(path, self.context, args[0].location))
        return statements


def _glob_paths(pattern: str) -> list[str]:
    import glob  # here: only a configuration with includes needs it

    found: list[str] = []
    for expanded in expand_braces(pattern):
        if glob.has_magic(expanded):
            found.extend(sorted(glob.glob(expanded)))
        elif os.path.exists(expanded):
            found.append(expanded)
    unique: list[str] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def expand_braces(pattern: str) -> list[str]:
    """Expand csh-style `{a,b}` alternatives, as keepalived's glob(GLOB_BRACE) does."""
    results: list[str] = []
    work = [pattern]
    while work and len(results) < MAX_BRACE_EXPANSIONS:
        current = work.pop()
        span = _first_brace_group(current)
        if span is None:
            results.append(current)
            continue
        start, end = span
        prefix, body, suffix = current[:start], current[start + 1 : end], current[end + 1 :]
        for alternative in reversed(_split_top_level(body)):
            work.append(prefix + alternative + suffix)
    return results


def _first_brace_group(text: str) -> tuple[int, int] | None:
    depth = 0
    start = -1
    for position, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = position
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                body = text[start + 1 : position]
                if "," in body:
                    return start, position
    return None


def _split_top_level(body: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in body:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        current.append(char)
    parts.append("".join(current))
    return parts
