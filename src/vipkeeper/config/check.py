"""`vipkeeper check`: print every diagnostic of a configuration and say whether it is usable.

Exit status: 0 when the configuration is usable (no diagnostics, or warnings only), 1 when it is
not (any error, including a file that cannot be read). Output is one `FILE:LINE:COL: severity:
message` line per diagnostic, then a one-line summary. It must never show a traceback: an
unexpected failure inside the checker is itself reported as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from vipkeeper.config.load import LoadResult, load_config
from vipkeeper.config.model import Config

EXIT_USABLE = 0
EXIT_UNUSABLE = 1


def run_check(
    path: str, stream: TextIO, *, describe: Callable[[Config], str | None] | None = None
) -> int:
    """`describe` adds a line about a usable configuration on this host (the data plane)."""
    try:
        result = load_config(path)
    except Exception as exc:  # the checker's own bug must still not surface as a traceback
        stream.write(
            f"{path}: error: internal error in vipkeeper while checking this file"
            f" ({type(exc).__name__}: {exc}); please report it\n"
        )
        stream.write(f"{path}: not usable\n")
        return EXIT_UNUSABLE
    for diagnostic in result.diagnostics:
        stream.write(diagnostic.format() + "\n")
    stream.write(summary(path, result) + "\n")
    if result.config is not None and describe is not None:
        line = describe(result.config)
        if line is not None:
            stream.write(f"{path}: {line}\n")
    return EXIT_USABLE if result.config is not None else EXIT_UNUSABLE


def summary(path: str, result: LoadResult) -> str:
    errors = len(result.errors)
    warnings = len(result.warnings)
    counts = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    verdict = "usable" if result.config is not None else "not usable"
    return f"{path}: {counts}: {verdict}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
