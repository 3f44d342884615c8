"""Dispatch of a block's statements to their handlers, by the keyword registry.

Owns the rule of `vipkeeper check`: a supported keyword goes to its handler, one keepalived
knows but vipkeeper does not is a WARNING, one keepalived does not know is an ERROR.
"""

from __future__ import annotations

from collections.abc import Mapping

from vipkeeper.config import keywords
from vipkeeper.config.blocks.parts import BuiltParts
from vipkeeper.config.blocks.setters import Handler, ValueSetters
from vipkeeper.config.diagnostics import Diagnostics
from vipkeeper.config.lexer import INCLUDE_WORDS
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args


class BlockReader(ValueSetters):
    """Base of every block reader: walks blocks, appends what it built to `parts`."""

    def __init__(self, diagnostics: Diagnostics, parts: BuiltParts) -> None:
        super().__init__(diagnostics)
        self.parts = parts

    def walk(self, parent: Statement, schema_name: str, handlers: Mapping[str, Handler]) -> None:
        """Dispatch each statement of `parent`'s block to its handler, or warn, or error."""
        schema = keywords.SCHEMAS[schema_name]
        extensions = keywords.VIPKEEPER_EXTENSIONS.get(schema_name, frozenset())
        seen: dict[str, Statement] = {}
        for statement in parent.block or ():
            if self._special_line(statement):
                continue
            name = statement.name
            handler = handlers.get(name)
            if not (schema.knows(name) or name in extensions):
                self._unknown(statement, schema, handlers)
                continue
            sub_schema = schema.keywords.get(name)
            if not self._block_shape_ok(statement, sub_schema):
                continue
            if handler is None:
                self.diagnostics.warning(statement.location, keywords.unsupported_message(name))
                if statement.block is not None and sub_schema not in (None, keywords.LINES):
                    self._check_known_only(statement, str(sub_schema))
                continue
            if sub_schema is None and name in seen:
                earlier = seen[name].location
                self.diagnostics.warning(
                    statement.location,
                    f"{name}: also set at line {earlier.line}; this later value is used",
                )
            seen[name] = statement
            handler(statement)

    def _special_line(self, statement: Statement) -> bool:
        """Lines of keepalived's preprocessor features that vipkeeper does not implement."""
        if statement.keyword.quoted:
            return False
        name = statement.name
        message = None
        if name.startswith("@"):
            message = f"{name}: conditional configuration lines are not supported, line ignored"
        elif name.startswith("$") and "=" in name:
            message = f"{name}: parameter definitions are not supported, line ignored"
        elif name.startswith("~"):
            message = f"{name}: sequence and list blocks are not supported, ignored"
        elif name in INCLUDE_WORDS:
            self.diagnostics.error(
                statement.location, f"{name} takes a file pattern, not a {{ }} block"
            )
            return True
        if message is None:
            return False
        self.diagnostics.warning(statement.location, message)
        return True

    def _unknown(
        self, statement: Statement, schema: keywords.BlockSchema, handlers: Mapping[str, Handler]
    ) -> None:
        supported = [name for name in handlers if not name.startswith("<")]
        self.diagnostics.error(
            statement.location, keywords.unknown_message(statement.name, schema, supported)
        )

    def _block_shape_ok(self, statement: Statement, sub_schema: str | None) -> bool:
        if sub_schema is None and statement.block is not None:
            where = statement.block_location or statement.location
            self.diagnostics.error(where, f"{statement.name} does not take a {{ }} block")
            return False
        if sub_schema is not None and statement.block is None:
            self.diagnostics.error(
                statement.location, f"{statement.name} needs a {{ }} block after it"
            )
            return False
        return True

    def _check_known_only(self, parent: Statement, schema_name: str) -> None:
        """Inside an ignored block, still reject keywords keepalived would not know."""
        schema = keywords.SCHEMAS[schema_name]
        for statement in parent.block or ():
            if self._special_line(statement):
                continue
            if not schema.knows(statement.name):
                self._unknown(statement, schema, {})
                continue
            sub_schema = schema.keywords[statement.name]
            if not self._block_shape_ok(statement, sub_schema):
                continue
            if statement.block is not None and sub_schema not in (None, keywords.LINES):
                self._check_known_only(statement, str(sub_schema))

    def _lines(self, statement: Statement, parse_line: Handler) -> None:
        """Feed every data line of a list block (`virtual_ipaddress { ... }`) to `parse_line`."""
        for line in statement.block or ():
            if self._special_line(line):
                continue
            if line.block is not None:
                self.diagnostics.error(
                    line.block_location or line.location,
                    f"lines inside {statement.name} do not take a {{ }} block",
                )
                continue
            parse_line(line)

    # ----------------------------------------------------------------- small handler makers

    def _name_of_block(self, statement: Statement) -> str | None:
        if not count_args(statement, self.diagnostics, 1, 1, f"{statement.name} NAME {{ ... }}"):
            return None
        return statement.args[0].value
