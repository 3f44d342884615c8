"""keepalived.conf support: lexer, parser (with includes), typed model, validation, `check`.

Public API: `load_config(path)` and `parse_text(text, filename)` return a `LoadResult` whose
`.config` is a `Config` (None if any error) and `.diagnostics` a list of `Diagnostic`.
"""

from vipkeeper.config.diagnostics import Diagnostic, Location, Severity
from vipkeeper.config.load import LoadResult, load_config, parse_text

__all__ = ["Diagnostic", "LoadResult", "Location", "Severity", "load_config", "parse_text"]
