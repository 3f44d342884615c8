"""Entry points of the configuration layer: a path or a text in, a Config and diagnostics out.

Owns the pipeline lexer -> parser (with includes) -> builder -> validator and the rule that a
configuration with any error yields no Config. It never raises on bad configuration and never
prints; `check` does the printing.
"""

from __future__ import annotations

from vipkeeper.config.build import Builder
from vipkeeper.config.diagnostics import Diagnostic, Diagnostics
from vipkeeper.config.model import Config
from vipkeeper.config.parser import ParseContext, Statement, parse_file, parse_text_tree
from vipkeeper.config.validate import validate
from vipkeeper.core.records import record


@record
class LoadResult:
    """`config` is None when any diagnostic is an error; `diagnostics` are in file order."""

    config: Config | None
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [item for item in self.diagnostics if item.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [item for item in self.diagnostics if not item.is_error]


def load_config(path: str) -> LoadResult:
    """Read `path` (and its includes) and build the configuration."""
    context = ParseContext(diagnostics=Diagnostics())
    statements = parse_file(path, context)
    if not context.files:
        return LoadResult(config=None, diagnostics=list(context.diagnostics.items))
    return _finish(statements, context)


def parse_text(text: str, filename: str = "<string>") -> LoadResult:
    """Build a configuration from text; includes resolve relative to `filename`'s directory."""
    context = ParseContext(diagnostics=Diagnostics(), files=[filename])
    statements = parse_text_tree(text, filename, context)
    return _finish(statements, context)


def _finish(statements: list[Statement], context: ParseContext) -> LoadResult:
    diagnostics = context.diagnostics
    parts = Builder(diagnostics).build(statements)
    validate(parts, diagnostics)
    order = {name: index for index, name in enumerate(dict.fromkeys(context.files))}
    ordered = sorted(
        diagnostics.items,
        key=lambda item: (order.get(item.file, len(order)), item.line, item.column),
    )
    if diagnostics.has_errors:
        return LoadResult(config=None, diagnostics=ordered)
    config = Config(
        global_defs=parts.global_defs,
        vrrp_scripts=tuple(parts.vrrp_scripts),
        vrrp_instances=tuple(parts.vrrp_instances),
        vrrp_sync_groups=tuple(parts.vrrp_sync_groups),
        virtual_servers=tuple(parts.virtual_servers),
        files=tuple(dict.fromkeys(context.files)),
    )
    return LoadResult(config=config, diagnostics=ordered)
