"""keepalived.conf lexer: text in, located tokens out.

Owns the character-level rules of the format: whitespace-separated words, `#` and `!` comments
running to the end of the line, `{` and `}` as tokens of their own, and quoted strings (`"..."`
or `'...'`, which may be glued to unquoted text to form one word, with shell-like backslash
escapes inside quotes). Every token keeps its file:line:column. Line ends are tokens because
keepalived is line oriented: a keyword's arguments stop at the end of its line.

The lexer never raises on bad input and never reads files; problems become diagnostics.
"""

from __future__ import annotations

import enum

from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.core.records import record

COMMENT_CHARS = frozenset("#!")
QUOTE_CHARS = frozenset("\"'")
BRACES = frozenset("{}")
# An include pattern may hold glob braces (`conf.d/{a,b}.conf`), so the rest of an include
# line is one word rather than tokens.
INCLUDE_WORDS = frozenset({"include", "includer", "includem", "includew", "includeb", "includea"})

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}


class TokenKind(enum.Enum):
    WORD = "word"
    OPEN = "{"
    CLOSE = "}"
    NEWLINE = "end of line"


@record
class Token:
    """One lexical unit. `quoted` is true when any part of a word was written inside quotes."""

    kind: TokenKind
    value: str
    location: Location
    quoted: bool = False


def tokenize(text: str, filename: str, diagnostics: Diagnostics) -> list[Token]:
    """Split `text` into tokens; every line, even an empty one, ends with a NEWLINE token."""
    tokens: list[Token] = []
    for line_index, line in enumerate(text.split("\n")):
        _tokenize_line(line, filename, line_index + 1, tokens, diagnostics)
        tokens.append(
            Token(
                kind=TokenKind.NEWLINE,
                value="\n",
                location=Location(file=filename, line=line_index + 1, column=len(line) + 1),
            )
        )
    return tokens


def _tokenize_line(
    line: str, filename: str, line_number: int, tokens: list[Token], diagnostics: Diagnostics
) -> None:
    position = 0
    length = len(line)
    while position < length:
        char = line[position]
        if char.isspace():
            position += 1
            continue
        if char in COMMENT_CHARS:
            return
        where = Location(file=filename, line=line_number, column=position + 1)
        if char in BRACES:
            kind = TokenKind.OPEN if char == "{" else TokenKind.CLOSE
            tokens.append(Token(kind=kind, value=char, location=where))
            position += 1
            continue
        first_on_line = not tokens or tokens[-1].kind is TokenKind.NEWLINE
        position = _read_word(line, position, where, tokens, diagnostics)
        if first_on_line and not tokens[-1].quoted and tokens[-1].value in INCLUDE_WORDS:
            _read_include_pattern(line, position, filename, line_number, tokens)
            return


def _read_include_pattern(
    line: str, position: int, filename: str, line_number: int, tokens: list[Token]
) -> None:
    rest = line[position:]
    for marker in COMMENT_CHARS:
        cut = rest.find(marker)
        if cut >= 0:
            rest = rest[:cut]
    stripped = rest.strip()
    if not stripped:
        return
    column = position + len(rest) - len(rest.lstrip()) + 1
    quoted = len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in QUOTE_CHARS
    value = stripped[1:-1] if quoted else stripped
    tokens.append(
        Token(
            kind=TokenKind.WORD,
            value=value,
            location=Location(file=filename, line=line_number, column=column),
            quoted=quoted,
        )
    )


def _read_word(
    line: str, position: int, where: Location, tokens: list[Token], diagnostics: Diagnostics
) -> int:
    """Read one word starting at `position`; return the position just after it."""
    parts: list[str] = []
    quoted = False
    length = len(line)
    while position < length:
        char = line[position]
        if char.isspace() or char in BRACES or char in COMMENT_CHARS:
            break
        if char in QUOTE_CHARS:
            quoted = True
            position = _read_quoted(line, position, where, parts, diagnostics)
            continue
        parts.append(char)
        position += 1
    tokens.append(Token(kind=TokenKind.WORD, value="".join(parts), location=where, quoted=quoted))
    return position


def _read_quoted(
    line: str, position: int, where: Location, parts: list[str], diagnostics: Diagnostics
) -> int:
    quote = line[position]
    opened_at = Location(file=where.file, line=where.line, column=position + 1)
    position += 1
    length = len(line)
    while position < length:
        char = line[position]
        if char == quote:
            return position + 1
        if char == "\\" and position + 1 < length:
            escaped, position = _read_escape(line, position + 1)
            parts.append(escaped)
            continue
        parts.append(char)
        position += 1
    diagnostics.error(
        opened_at,
        f"unterminated quoted string: add the closing {quote} before the end of the line",
    )
    return length


def _read_escape(line: str, position: int) -> tuple[str, int]:
    """Decode the escape whose first character (after the backslash) is at `position`."""
    char = line[position]
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char], position + 1
    if char in "01234567":
        end = position
        while end < len(line) and end - position < 3 and line[end] in "01234567":
            end += 1
        return chr(int(line[position:end], 8)), end
    if char == "x":
        end = position + 1
        while end < len(line) and line[end] in "0123456789abcdefABCDEF" and end - position <= 2:
            end += 1
        if end == position + 1:
            return "x", position + 1
        return chr(int(line[position + 1 : end], 16)), end
    if char == "c" and position + 1 < len(line):
        return chr(ord(line[position + 1].upper()) & 0x1F), position + 2
    return char, position + 1
