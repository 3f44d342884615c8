"""Health checker blocks of a real server: HTTP_GET (with its url blocks), TCP_CHECK, MISC_CHECK.

Owns the checker model objects and how checker settings are inherited from the enclosing blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from vipkeeper.config.blocks.parts import Fields
from vipkeeper.config.blocks.setters import Handler, run_as
from vipkeeper.config.blocks.walker import BlockReader
from vipkeeper.config.lexer import Token
from vipkeeper.config.lvs_model import Checker, HttpGetCheck, HttpUrl, MiscCheck, TcpCheck
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args, to_int


@dataclass(frozen=True)
class CheckerDefaults:
    """Checker settings given on the real or virtual server, for its checkers to inherit."""

    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    delay_loop: float | None = None
    virtualhost: str | None = None

    def under(self, fields: Fields) -> CheckerDefaults:
        """These defaults overridden by whatever `fields` sets (inner blocks win)."""
        return CheckerDefaults(
            connect_timeout=fields.get("connect_timeout", self.connect_timeout),
            retry=fields.get("retry", self.retry),
            delay_before_retry=fields.get("delay_before_retry", self.delay_before_retry),
            delay_loop=fields.get("delay_loop", self.delay_loop),
            virtualhost=fields.get("virtualhost", self.virtualhost),
        )


class CheckerReader(BlockReader):
    """Reads one checker block of a real server into its model object."""

    def read(self, kind: str, statement: Statement, inherited: CheckerDefaults) -> Checker | None:
        if statement.args:
            self.diagnostics.error(statement.args[0].location, f"{kind} takes no arguments")
        fields: Fields = {}
        urls: list[HttpUrl] = []
        url_statements: list[Statement] = []
        handlers: dict[str, Handler] = {
            "delay_loop": self._set_seconds(fields, "delay_loop", 0.0, allow_minimum=False),
            "retry": self._set_int(fields, "retry", 0, 1_000_000),
            "delay_before_retry": self._set_seconds(fields, "delay_before_retry", 0.0),
        }
        if kind in ("HTTP_GET", "TCP_CHECK"):
            handlers.update(
                {
                    "connect_ip": self._set_ip(fields, "connect_ip"),
                    "connect_port": self._set_int(fields, "connect_port", 1, 65535),
                    "connect_timeout": self._set_seconds(
                        fields, "connect_timeout", 0.0, allow_minimum=False
                    ),
                }
            )
        if kind == "HTTP_GET":
            handlers.update(
                {
                    "nb_get_retry": handlers["retry"],
                    "virtualhost": self._set_word(fields, "virtualhost", "HOSTNAME"),
                    "url": url_statements.append,
                }
            )
        misc: Fields = {}
        user: list[str] = []
        if kind == "MISC_CHECK":
            handlers.update(
                {
                    "misc_path": self._set_command(misc, "command", user_and_group=False),
                    "misc_timeout": self._set_seconds(
                        misc, "misc_timeout", 0.0, allow_minimum=False
                    ),
                    "misc_dynamic": self._set_flag(misc, "misc_dynamic"),
                    "user": self._set_user(user),
                }
            )
        self.walk(statement, kind, handlers)
        defaults = inherited.under(fields)
        common: Fields = {
            key: value
            for key, value in (
                ("retry", defaults.retry),
                ("delay_before_retry", defaults.delay_before_retry),
                ("delay_loop", defaults.delay_loop),
            )
            if value is not None
        }
        if kind == "MISC_CHECK":
            if "command" not in misc:
                self.diagnostics.error(
                    statement.location, "MISC_CHECK needs a `misc_path PROGRAM` line"
                )
                return None
            misc["command"] = run_as(misc["command"], user)
            return MiscCheck(location=statement.location, **common, **misc)
        connection: Fields = {
            key: fields[key] for key in ("connect_ip", "connect_port") if key in fields
        }
        if defaults.connect_timeout is not None:
            connection["connect_timeout"] = defaults.connect_timeout
        if kind == "TCP_CHECK":
            return TcpCheck(location=statement.location, **common, **connection)
        for url_statement in url_statements:
            url = self._url(url_statement, defaults.virtualhost)
            if url is not None:
                urls.append(url)
        if not url_statements:
            self.diagnostics.error(
                statement.location, "HTTP_GET needs at least one `url { path /... }` block"
            )
            return None
        if len(urls) != len(url_statements):
            return None
        return HttpGetCheck(urls=tuple(urls), location=statement.location, **common, **connection)

    def _url(self, statement: Statement, virtualhost: str | None) -> HttpUrl | None:
        fields: Fields = {}

        def status_code(line: Statement) -> None:
            usage = "status_code CODE|FIRST-LAST ..."
            if not count_args(line, self.diagnostics, 1, 1000, usage):
                return
            ranges: list[tuple[int, int]] = []
            for token in line.args:
                low_text, dash, high_text = token.value.partition("-")
                low_token = Token(kind=token.kind, value=low_text, location=token.location)
                high_token = Token(
                    kind=token.kind, value=high_text if dash else low_text, location=token.location
                )
                low = to_int(low_token, self.diagnostics, "status_code", 100, 599)
                high = to_int(high_token, self.diagnostics, "status_code", 100, 599)
                if low is None or high is None:
                    return
                if low > high:
                    self.diagnostics.error(
                        token.location, f"status_code: range {token.value} is backwards"
                    )
                    return
                ranges.append((low, high))
            fields["status_codes"] = tuple(ranges)

        def digest(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 1, 1, "digest MD5HEX"):
                return
            value = line.args[0].value.lower()
            if len(value) != 32 or any(char not in "0123456789abcdef" for char in value):
                self.diagnostics.error(
                    line.args[0].location,
                    "digest: not an MD5 digest; valid: 32 hexadecimal digits (see genhash)",
                )
                return
            fields["digest"] = value

        self.walk(
            statement,
            "url",
            {
                "path": self._set_word(fields, "path", "/PATH"),
                "status_code": status_code,
                "digest": digest,
                "virtualhost": self._set_word(fields, "virtualhost", "HOSTNAME"),
            },
        )
        if "path" not in fields:
            self.diagnostics.error(statement.location, "url needs a `path /...` line")
            return None
        fields.setdefault("virtualhost", virtualhost)
        return HttpUrl(location=statement.location, **fields)
