"""The virtual_server and real_server blocks: the LVS service and its real servers.

Owns the service header, scheduler/method/protocol words, the DR and family rules between a
service and its real servers, and the checker defaults they hand down.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from enum import Enum

from vipkeeper.config.blocks.checkers import CheckerDefaults, CheckerReader
from vipkeeper.config.blocks.parts import BuiltParts, Fields
from vipkeeper.config.blocks.setters import Handler
from vipkeeper.config.blocks.walker import BlockReader
from vipkeeper.config.diagnostics import Diagnostics
from vipkeeper.config.lvs_model import Checker, RealServer, SorryServer, VirtualServer
from vipkeeper.config.model import LvsMethod, LvsScheduler, Protocol
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args, to_int, to_ip, to_port

SCHEDULERS_KNOWN_UNSUPPORTED = frozenset({"lblc", "lblcr", "dh", "sed", "nq", "fo", "ovf", "twos"})
SCHEDULER_CHOICES = "|".join(scheduler.value for scheduler in LvsScheduler)
DEFAULT_PERSISTENCE_TIMEOUT = 360


class VirtualServerReader(BlockReader):
    """Reads virtual_server blocks; each real server's checkers go to the `CheckerReader`."""

    def __init__(self, diagnostics: Diagnostics, parts: BuiltParts) -> None:
        super().__init__(diagnostics, parts)
        self._checkers = CheckerReader(diagnostics, parts)

    def read(self, statement: Statement) -> None:
        header = self._virtual_server_header(statement)
        fields: Fields = {}
        real_servers: list[Statement] = []
        skip: list[str] = []

        def scheduler(line: Statement) -> None:
            usage = f"{line.name} {SCHEDULER_CHOICES}"
            if not count_args(line, self.diagnostics, 1, 1, usage):
                return
            token = line.args[0]
            try:
                fields["scheduler"] = LvsScheduler(token.value)
            except ValueError:
                if token.value in SCHEDULERS_KNOWN_UNSUPPORTED:
                    self.diagnostics.warning(
                        token.location,
                        f"{line.name} {token.value}: scheduler not supported, using wrr"
                        f" (vipkeeper supports {SCHEDULER_CHOICES})",
                    )
                else:
                    self.diagnostics.error(
                        token.location,
                        f"{line.name}: {token.value!r} is not a scheduler;"
                        f" valid: {SCHEDULER_CHOICES}",
                    )

        method = self._choice_or_skip(
            fields, "method", LvsMethod, {"TUN": "tunnelling is not supported"}, skip, max_args=8
        )
        protocol = self._choice_or_skip(
            fields, "protocol", Protocol, {"SCTP": "not supported"}, skip
        )

        def persistence(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 0, 1, "persistence_timeout [SECONDS]"):
                return
            if not line.args:
                fields["persistence_timeout"] = DEFAULT_PERSISTENCE_TIMEOUT
                return
            value = to_int(line.args[0], self.diagnostics, line.name, 1, 2**31 - 1)
            if value is not None:
                fields["persistence_timeout"] = value

        def sorry(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 1, 2, "sorry_server ADDRESS [PORT]"):
                return
            address = to_ip(line.args[0], self.diagnostics, "sorry_server")
            port = (
                to_port(line.args[1], self.diagnostics, "sorry_server")
                if len(line.args) > 1
                else None
            )
            if address is not None and (port is not None or len(line.args) == 1):
                fields["sorry_server"] = SorryServer(
                    address=address, port=port, location=line.location
                )

        flags: set[str] = set()

        def scheduler_flag(line: Statement) -> None:
            if count_args(line, self.diagnostics, 0, 0, line.name):
                flags.add(line.name.split("-", 1)[1])  # "port" or "fallback"

        self.walk(
            statement,
            "virtual_server",
            {
                "sh-port": scheduler_flag,
                "mh-port": scheduler_flag,
                "sh-fallback": scheduler_flag,
                "mh-fallback": scheduler_flag,
                "delay_loop": self._set_seconds(fields, "delay_loop", 0.0, allow_minimum=False),
                "lvs_sched": scheduler,
                "lb_algo": scheduler,
                "lvs_method": method,
                "lb_kind": method,
                "protocol": protocol,
                "persistence_timeout": persistence,
                "quorum": self._set_int(fields, "quorum", 1, 2**31 - 1),
                "hysteresis": self._set_int(fields, "hysteresis", 0, 2**31 - 1),
                "quorum_up": self._set_command(fields, "quorum_up"),
                "quorum_down": self._set_command(fields, "quorum_down"),
                "sorry_server": sorry,
                "sorry_server_inhibit": self._set_flag(fields, "sorry_server_inhibit"),
                "alpha": self._set_flag(fields, "alpha"),
                "omega": self._set_flag(fields, "omega"),
                "inhibit_on_failure": self._set_flag(fields, "inhibit_on_failure"),
                "virtualhost": self._set_word(fields, "virtualhost", "HOSTNAME"),
                **self._checker_default_handlers(fields),
                "real_server": real_servers.append,
            },
        )
        if header is None or skip:
            return
        address, port, fwmark = header
        defaults = CheckerDefaults().under(fields)
        for key in ("connect_timeout", "retry", "delay_before_retry"):
            fields.pop(key, None)
        method_value: LvsMethod = fields.get("method", LvsMethod.NAT)
        family = ipaddress.ip_address(address).version if address is not None else None
        built: list[RealServer] = []
        for rs_statement in real_servers:
            real = self._real_server(
                rs_statement, port, defaults, bool(fields.get("inhibit_on_failure"))
            )
            if real is None:
                continue
            real_family = ipaddress.ip_address(real.address).version
            if family is not None and real_family != family:
                self.diagnostics.error(
                    real.location,
                    f"real_server {real.address}: IPv{real_family} behind an IPv{family}"
                    " virtual server; without tunnelling both must be the same family",
                )
                continue
            family = real_family
            if (
                method_value is LvsMethod.DR
                and port is not None
                and real.port is not None
                and real.port != port
            ):
                self.diagnostics.error(
                    real.location,
                    f"real_server {real.address} port {real.port}: direct routing (DR) cannot"
                    f" change the destination port; use {port} or lvs_method NAT",
                )
                continue
            if any(other.address == real.address and other.port == real.port for other in built):
                self.diagnostics.error(
                    real.location,
                    f"real_server {real.address} {real.port}: already declared in this"
                    " virtual server",
                )
                continue
            built.append(real)
        self.parts.virtual_servers.append(
            VirtualServer(
                address=address,
                port=port,
                fwmark=fwmark,
                scheduler_flags=frozenset(flags),
                real_servers=tuple(built),
                location=statement.location,
                **fields,
            )
        )

    def _choice_or_skip(
        self,
        fields: Fields,
        key: str,
        choices: type[Enum],
        unsupported: Mapping[str, str],
        skip: list[str],
        *,
        max_args: int = 1,
    ) -> Handler:
        """`keyword WORD`: one of `choices`; a word in `unsupported` makes vipkeeper ignore the
        virtual server (a warning, the word added to `skip`); anything else is an error."""
        valid = "|".join(str(choice.value) for choice in choices)

        def handle(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 1, max_args, f"{line.name} {valid}"):
                return
            token = line.args[0]
            if token.value in unsupported:
                self.diagnostics.warning(
                    token.location,
                    f"{line.name} {token.value}: {unsupported[token.value]}, virtual server"
                    " ignored",
                )
                skip.append(token.value)
            elif len(line.args) == 1 and token.value in valid.split("|"):
                fields[key] = choices(token.value)
            else:
                self.diagnostics.error(
                    token.location, f"{line.name}: {token.value!r} is not valid; valid: {valid}"
                )

        return handle

    def _virtual_server_header(
        self, statement: Statement
    ) -> tuple[str | None, int | None, int | None] | None:
        args = statement.args
        usage = "virtual_server ADDRESS PORT | virtual_server fwmark NUMBER"
        if not args:
            self.diagnostics.error(statement.location, f"virtual_server needs a target; {usage}")
            return None
        first = args[0]
        if first.value == "group":
            self.diagnostics.warning(
                first.location,
                "virtual_server group: virtual server groups are not supported, ignored",
            )
            return None
        if first.value == "fwmark":
            if not count_args(statement, self.diagnostics, 2, 2, "virtual_server fwmark NUMBER"):
                return None
            mark = to_int(args[1], self.diagnostics, "fwmark", 1, 2**32 - 1)
            return None if mark is None else (None, None, mark)
        address = to_ip(first, self.diagnostics, "virtual_server")
        if address is None:
            return None
        if len(args) == 1:
            self.diagnostics.warning(
                first.location,
                "virtual_server without a port: port-less persistent services are not"
                " supported, virtual server ignored",
            )
            return None
        if len(args) > 2:
            self.diagnostics.error(args[2].location, f"unexpected {args[2].value!r}; {usage}")
            return None
        port = to_port(args[1], self.diagnostics, "virtual_server")
        return None if port is None else (address, port, None)

    def _checker_default_handlers(self, fields: Fields) -> dict[str, Handler]:
        return {
            "connect_timeout": self._set_seconds(
                fields, "connect_timeout", 0.0, allow_minimum=False
            ),
            "retry": self._set_int(fields, "retry", 0, 1_000_000),
            "delay_before_retry": self._set_seconds(fields, "delay_before_retry", 0.0),
        }

    def _real_server(
        self,
        statement: Statement,
        vs_port: int | None,
        inherited: CheckerDefaults,
        vs_inhibit: bool,
    ) -> RealServer | None:
        if not count_args(statement, self.diagnostics, 1, 2, "real_server ADDRESS [PORT] { }"):
            return None
        address = to_ip(statement.args[0], self.diagnostics, "real_server")
        port: int | None = vs_port
        if len(statement.args) > 1:
            port = to_port(statement.args[1], self.diagnostics, "real_server")
            if port is None:
                return None
        fields: Fields = {}
        checkers: list[tuple[str, Statement]] = []

        def checker(kind: str) -> Handler:
            return lambda line: checkers.append((kind, line))

        self.walk(
            statement,
            "real_server",
            {
                "weight": self._set_int(fields, "weight", 0, 65535),
                "inhibit_on_failure": self._set_flag(fields, "inhibit_on_failure"),
                "notify_up": self._set_command(fields, "notify_up"),
                "notify_down": self._set_command(fields, "notify_down"),
                "virtualhost": self._set_word(fields, "virtualhost", "HOSTNAME"),
                "delay_loop": self._set_seconds(fields, "delay_loop", 0.0, allow_minimum=False),
                **self._checker_default_handlers(fields),
                "HTTP_GET": checker("HTTP_GET"),
                "TCP_CHECK": checker("TCP_CHECK"),
                "MISC_CHECK": checker("MISC_CHECK"),
            },
        )
        if address is None:
            return None
        defaults = inherited.under(fields)
        if vs_inhibit:
            fields.setdefault("inhibit_on_failure", True)
        for key in ("connect_timeout", "retry", "delay_before_retry", "delay_loop", "virtualhost"):
            fields.pop(key, None)
        built: list[Checker] = []
        for kind, line in checkers:
            made = self._checkers.read(kind, line, defaults)
            if made is not None:
                built.append(made)
        return RealServer(
            address=address,
            port=port,
            checkers=tuple(built),
            location=statement.location,
            **fields,
        )
