"""Locations and diagnostics: how the configuration layer reports what it found.

This module owns the `Location` every token and model object carries, and the `Diagnostic` that
`vipkeeper check` prints as `FILE:LINE:COL: error: ...`. It must never print or raise: it only
describes findings so that callers decide what to do with them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vipkeeper.core.records import record


@dataclass(frozen=True, kw_only=True, order=True)
class Location:
    """Where something was written: file name as given, 1-based line and column.

    Line and column 0 mean "the file as a whole" (for example a file that cannot be read).
    """

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


def _printable(text: str) -> str:
    """Control characters a message quotes from the file (a stray CR, a tab) are shown escaped,
    so every diagnostic stays one `file:line:col: severity: text` line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Severity(enum.Enum):
    """A warning leaves the configuration usable; an error makes it unusable."""

    WARNING = "warning"
    ERROR = "error"


@record
class Diagnostic:
    """One finding about the configuration, with the place it refers to."""

    severity: Severity
    file: str
    line: int
    column: int
    message: str

    @property
    def location(self) -> Location:
        return Location(file=self.file, line=self.line, column=self.column)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        """`FILE:LINE:COL: error: message`, or `FILE: error: message` for file-level findings."""
        return f"{self.location}: {self.severity.value}: {_printable(self.message)}"

    def __str__(self) -> str:
        return self.format()


class Diagnostics:
    """An append-only collector shared by the lexer, parser, builder and validator."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, where: Location, message: str) -> None:
        self._add(Severity.ERROR, where, message)

    def warning(self, where: Location, message: str) -> None:
        self._add(Severity.WARNING, where, message)

    def _add(self, severity: Severity, where: Location, message: str) -> None:
        self.items.append(
            Diagnostic(
                severity=severity,
                file=where.file,
                line=where.line,
                column=where.column,
                message=message,
            )
        )

    @property
    def has_errors(self) -> bool:
        return any(item.is_error for item in self.items)
