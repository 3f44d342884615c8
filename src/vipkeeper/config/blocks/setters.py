"""Handler makers for one-value keywords: convert the value, store it in a fields dict.

Owns the shape of every `keyword VALUE` line; a bad value is reported where it is written and
the field is left unset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from vipkeeper.config.blocks.parts import Fields
from vipkeeper.config.diagnostics import Diagnostics
from vipkeeper.config.model import Command
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args, flag, to_command, to_int, to_ip, to_seconds

Handler = Callable[[Statement], None]

MAX_TIMER = 86400.0 * 365


def run_as(command: Command, user: list[str]) -> Command:
    """`command` run as the user of a `user USER [GROUP]` line (`user` as `_set_user` fills it);
    unchanged when there was none."""
    if not user:
        return command
    return dataclasses.replace(command, user=user[0], group=user[1] if len(user) > 1 else None)


class ValueSetters:
    """Makes handlers that report to `self.diagnostics`; every block reader is one."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics

    def _set_int(self, fields: Fields, key: str, minimum: int, maximum: int) -> Handler:
        def handle(statement: Statement) -> None:
            usage = f"{statement.name} {minimum}..{maximum}"
            if count_args(statement, self.diagnostics, 1, 1, usage):
                value = to_int(
                    statement.args[0], self.diagnostics, statement.name, minimum, maximum
                )
                if value is not None:
                    fields[key] = value

        return handle

    def _set_seconds(
        self,
        fields: Fields,
        key: str,
        minimum: float,
        maximum: float = MAX_TIMER,
        *,
        allow_minimum: bool = True,
    ) -> Handler:
        def handle(statement: Statement) -> None:
            if count_args(statement, self.diagnostics, 1, 1, f"{statement.name} SECONDS"):
                value = to_seconds(
                    statement.args[0],
                    self.diagnostics,
                    statement.name,
                    minimum,
                    maximum,
                    allow_minimum=allow_minimum,
                )
                if value is not None:
                    fields[key] = value

        return handle

    def _set_word(self, fields: Fields, key: str, usage: str) -> Handler:
        def handle(statement: Statement) -> None:
            if count_args(statement, self.diagnostics, 1, 1, f"{statement.name} {usage}"):
                fields[key] = statement.args[0].value

        return handle

    def _set_flag(self, fields: Fields, key: str, value_when_set: bool = True) -> Handler:
        def handle(statement: Statement) -> None:
            value = flag(statement, self.diagnostics)
            if value is not None:
                fields[key] = value if value_when_set else not value

        return handle

    def _set_ip(self, fields: Fields, key: str, family: int | None = None) -> Handler:
        def handle(statement: Statement) -> None:
            if count_args(statement, self.diagnostics, 1, 1, f"{statement.name} ADDRESS"):
                value = to_ip(statement.args[0], self.diagnostics, statement.name, family)
                if value is not None:
                    fields[key] = value

        return handle

    def _set_command(self, fields: Fields, key: str, *, user_and_group: bool = True) -> Handler:
        """`keyword PROGRAM [ARGS]`; without `user_and_group` the user, if any, comes from a
        separate `user` line (see `_set_user`)."""

        def handle(statement: Statement) -> None:
            command = to_command(statement, self.diagnostics, user_and_group=user_and_group)
            if command is not None:
                fields[key] = command

        return handle

    def _set_choice(self, fields: Fields, key: str, choices: Mapping[str, object]) -> Handler:
        def handle(statement: Statement) -> None:
            valid = "|".join(choices)
            if count_args(statement, self.diagnostics, 1, 1, f"{statement.name} {valid}"):
                token = statement.args[0]
                if token.value in choices:
                    fields[key] = choices[token.value]
                else:
                    self.diagnostics.error(
                        token.location,
                        f"{statement.name}: {token.value!r} is not valid; valid: {valid}",
                    )

        return handle

    def _set_user(self, user: list[str]) -> Handler:
        """`user USER [GROUP]` into `user`, for `run_as`."""

        def handle(statement: Statement) -> None:
            if count_args(statement, self.diagnostics, 1, 2, "user USER [GROUP]"):
                user[:] = [token.value for token in statement.args]

        return handle
