"""Statement tree in, typed model out: the order in which the top-level blocks are read.

Each block kind has its reader in `config/blocks/`; cross-object checks (names that must exist,
duplicates across blocks) live in `validate`. Never reads files, never raises on bad input.
The virtual servers' reader (and the LVS model with it) loads with the first `virtual_server`.
"""

from __future__ import annotations

from collections.abc import Iterable

from vipkeeper.config import keywords
from vipkeeper.config.blocks.global_defs import GlobalDefsReader
from vipkeeper.config.blocks.parts import BuiltParts
from vipkeeper.config.blocks.tracking import TrackingReader
from vipkeeper.config.blocks.vrrp_instance import InstanceReader
from vipkeeper.config.blocks.walker import BlockReader
from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.config.lexer import Token, TokenKind
from vipkeeper.config.parser import Statement

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    from vipkeeper.config.blocks.virtual_server import VirtualServerReader

__all__ = ["Builder", "BuiltParts"]


class Builder:
    """Walks the statement tree once; collects model objects and diagnostics."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        self.parts = BuiltParts()
        self._top = BlockReader(diagnostics, self.parts)
        self._global_defs = GlobalDefsReader(diagnostics, self.parts)
        self._tracking = TrackingReader(diagnostics, self.parts)
        self._instances = InstanceReader(diagnostics, self.parts, self._tracking)
        self._virtual_servers: VirtualServerReader | None = None
        self._instance_statements: list[Statement] = []

    def build(self, statements: Iterable[Statement]) -> BuiltParts:
        root = Statement(keyword=_synthetic("top level"), block=tuple(statements))
        self._top.walk(
            root,
            keywords.TOP,
            {
                "global_defs": self._global_defs.read,
                "vrrp_script": self._tracking.vrrp_script,
                "vrrp_instance": self._instance_statements.append,
                "vrrp_sync_group": self._tracking.vrrp_sync_group,
                "virtual_server": self._virtual_server,
            },
        )
        self.parts.global_defs = self._global_defs.make()
        # Instances are built after global_defs, wherever it appears, since it sets defaults.
        for statement in self._instance_statements:
            self._instances.read(statement)
        return self.parts

    def _virtual_server(self, statement: Statement) -> None:
        if self._virtual_servers is None:
            from vipkeeper.config.blocks.virtual_server import VirtualServerReader

            self._virtual_servers = VirtualServerReader(self.diagnostics, self.parts)
        self._virtual_servers.read(statement)


def _synthetic(value: str) -> Token:
    return Token(kind=TokenKind.WORD, value=value, location=Location(file="", line=0, column=0))
