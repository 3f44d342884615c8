"""Value converters: argument tokens in, typed values out, or a located error saying what is valid.

Owns the spelling of keepalived's value types: integers, timers (decimal seconds), booleans
(on|off|true|false|yes|no), IP addresses, ports, and commands (a script path with arguments, as a
quoted string split like a shell command line, optionally followed by user and group).

Every converter reports through `Diagnostics` and returns None on failure; none of them raise.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence

from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.config.lexer import Token
from vipkeeper.config.model import Command
from vipkeeper.config.parser import Statement

TRUE_WORDS = frozenset({"on", "true", "yes"})
FALSE_WORDS = frozenset({"off", "false", "no"})
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def count_args(
    statement: Statement, diagnostics: Diagnostics, minimum: int, maximum: int, usage: str
) -> bool:
    """Check the number of arguments; on mismatch report `usage` (e.g. `priority 1..255`)."""
    count = len(statement.args)
    if minimum <= count <= maximum:
        return True
    if count < minimum:
        where = statement.location
        problem = "is missing its value" if count == 0 else "has too few values"
    else:
        where = statement.args[maximum].location
        problem = f"takes at most {maximum} value{'s' if maximum != 1 else ''}"
    diagnostics.error(where, f"{statement.name} {problem}; usage: {usage}")
    return False


def to_int(
    token: Token,
    diagnostics: Diagnostics,
    keyword: str,
    minimum: int,
    maximum: int,
    hint: str = "",
) -> int | None:
    text = token.value
    if not _INTEGER.fullmatch(text):
        diagnostics.error(
            token.location,
            f"{keyword}: {text!r} is not a whole number; valid: {minimum}..{maximum}{hint}",
        )
        return None
    value = int(text)
    if not minimum <= value <= maximum:
        diagnostics.error(
            token.location,
            f"{keyword}: {value} is out of range; valid: {minimum}..{maximum}{hint}",
        )
        return None
    return value


def to_seconds(
    token: Token,
    diagnostics: Diagnostics,
    keyword: str,
    minimum: float,
    maximum: float,
    *,
    allow_minimum: bool = True,
) -> float | None:
    """A keepalived <TIMER>: decimal seconds. `allow_minimum=False` makes the lower bound open."""
    text = token.value
    lower = f"{minimum:g}" if allow_minimum else f"more than {minimum:g}"
    valid = f"valid: {lower} to {maximum:g} seconds"
    if not _DECIMAL.fullmatch(text):
        diagnostics.error(token.location, f"{keyword}: {text!r} is not a number; {valid}")
        return None
    value = float(text)
    too_low = value < minimum if allow_minimum else value <= minimum
    if too_low or value > maximum or not math.isfinite(value):
        diagnostics.error(token.location, f"{keyword}: {text} is out of range; {valid}")
        return None
    return value


def to_bool(token: Token, diagnostics: Diagnostics, keyword: str) -> bool | None:
    word = token.value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    diagnostics.error(
        token.location,
        f"{keyword}: {token.value!r} is not a boolean; valid: on|off|true|false|yes|no",
    )
    return None


def flag(statement: Statement, diagnostics: Diagnostics) -> bool | None:
    """A flag keyword: alone it means true; an optional <BOOL> argument may say otherwise."""
    if not count_args(statement, diagnostics, 0, 1, f"{statement.name} [on|off]"):
        return None
    if not statement.args:
        return True
    return to_bool(statement.args[0], diagnostics, statement.name)


def to_ip(
    token: Token, diagnostics: Diagnostics, keyword: str, family: int | None = None
) -> str | None:
    """A single IPv4 or IPv6 address (no prefix), returned in canonical text form."""
    try:
        address = ipaddress.ip_address(token.value)
    except ValueError:
        kind = {4: "IPv4 address", 6: "IPv6 address"}.get(family or 0, "IPv4 or IPv6 address")
        diagnostics.error(
            token.location, f"{keyword}: {token.value!r} is not a valid {kind} (e.g. 192.0.2.1)"
        )
        return None
    if family is not None and address.version != family:
        diagnostics.error(token.location, f"{keyword}: {token.value} is not an IPv{family} address")
        return None
    return str(address)


def to_port(token: Token, diagnostics: Diagnostics, keyword: str) -> int | None:
    return to_int(token, diagnostics, keyword, 1, 65535, " (a TCP/UDP port)")


def to_command(
    statement: Statement,
    diagnostics: Diagnostics,
    *,
    user_and_group: bool,
) -> Command | None:
    """A script keyword's value.

    keepalived's convention: a quoted string holds the program and its arguments, split on
    unquoted spaces (single quotes inside keep a space in one argument). With `user_and_group`
    (notify scripts), up to two more words name the user and group to run as; otherwise (vrrp
    `script`, `misc_path`) further words are more arguments.
    """
    usage = f'{statement.name} PROGRAM|"PROGRAM ARGS..."'
    if user_and_group:
        usage += " [USER [GROUP]]"
        if not count_args(statement, diagnostics, 1, 3, usage):
            return None
    elif not count_args(statement, diagnostics, 1, 1 << 16, usage):
        return None
    first = statement.args[0]
    rest: Sequence[Token] = statement.args[1:]
    argv = split_command(first, diagnostics, statement.name)
    if argv is None:
        return None
    user = group = None
    if user_and_group:
        if rest:
            user = rest[0].value
        if len(rest) > 1:
            group = rest[1].value
    else:
        argv = [*argv, *(token.value for token in rest)]
    return Command(argv=tuple(argv), user=user, group=group, location=statement.location)


def split_command(token: Token, diagnostics: Diagnostics, keyword: str) -> list[str] | None:
    if not token.quoted:
        if token.value:
            return [token.value]
        _empty_command(token.location, diagnostics, keyword)
        return None
    import shlex  # for quoted commands only

    try:
        argv = shlex.split(token.value)
    except ValueError as exc:
        diagnostics.error(token.location, f"{keyword}: cannot split the command line: {exc}")
        return None
    if not argv:
        _empty_command(token.location, diagnostics, keyword)
        return None
    return argv


def _empty_command(where: Location, diagnostics: Diagnostics, keyword: str) -> None:
    diagnostics.error(where, f"{keyword}: the command is empty; give a program path")
