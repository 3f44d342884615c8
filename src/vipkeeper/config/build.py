"""Statement tree in, typed model out: the place where vipkeeper decides what it supports.

Owns the rule at the heart of `vipkeeper check`:
  * a keyword vipkeeper implements is converted into the model, with value errors located;
  * a keyword keepalived knows but vipkeeper does not implement is a WARNING and is ignored;
  * a keyword keepalived does not know in that block is an ERROR, with close-match suggestions.
It also folds defaults into each object (global GARP settings into instances, virtual and real
server checker settings into checkers) so the daemon gets complete, resolved objects.

Cross-object checks (names that must exist, duplicates across blocks) live in `validate`. This
module never reads files and never raises on bad input.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vipkeeper.config import keywords
from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.config.lexer import INCLUDE_WORDS, Token, TokenKind
from vipkeeper.config.model import (
    NOTIFY_FIFOS,
    Authentication,
    Checker,
    Command,
    GlobalDefs,
    HttpGetCheck,
    HttpUrl,
    LvsBackend,
    LvsMethod,
    LvsScheduler,
    LvsSyncDaemon,
    MiscCheck,
    NotifyFifo,
    Protocol,
    RealServer,
    SorryServer,
    TcpCheck,
    TrackedInterface,
    TrackedScript,
    UnicastPeer,
    VirtualIpAddress,
    VirtualServer,
    VrrpInstance,
    VrrpScript,
    VrrpState,
    VrrpSyncGroup,
    instance_family,
)
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import (
    count_args,
    flag,
    to_command,
    to_int,
    to_ip,
    to_port,
    to_seconds,
)
from vipkeeper.core.timing import V2_MAX_SECONDS, advert_int_error

Handler = Callable[[Statement], None]
Fields = dict[str, Any]

MAX_TIMER = 86400.0 * 365
IFNAME_MAX = 15  # IFNAMSIZ (16) less the terminating NUL
VMAC_DEFAULT_PREFIX = "vrrp."  # keepalived's name for a virtual MAC interface: vrrp.{VRID}
AUTH_PASS_MAX = 8  # RFC 2338 §5.3.6: the 8-octet Authentication Data field
TRACK_WEIGHT = 253

SCOPES = frozenset({"site", "link", "host", "nowhere", "global"})
VIP_OPTIONS_WITH_VALUE_UNSUPPORTED = frozenset({"peer", "preferred_lft", "track_group"})
VIP_FLAGS_UNSUPPORTED = frozenset(
    {"home", "-nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track", "use_vmac"}
)
SCHEDULERS_KNOWN_UNSUPPORTED = frozenset({"lblc", "lblcr", "dh", "sed", "nq", "fo", "ovf", "twos"})
SCHEDULER_CHOICES = "|".join(scheduler.value for scheduler in LvsScheduler)
DEFAULT_PERSISTENCE_TIMEOUT = 360


@dataclass
class BuiltParts:
    """What the builder produced, before cross-object validation."""

    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    vrrp_scripts: list[VrrpScript] = field(default_factory=list)
    vrrp_instances: list[VrrpInstance] = field(default_factory=list)
    vrrp_sync_groups: list[VrrpSyncGroup] = field(default_factory=list)
    virtual_servers: list[VirtualServer] = field(default_factory=list)
    # Where each instance said `version`, for cross-checks that need to know it was explicit.
    explicit_versions: dict[str, Location] = field(default_factory=dict)
    # Where each sync group names each member, to locate membership errors.
    sync_member_locations: dict[tuple[str, str], Location] = field(default_factory=dict)


@dataclass(frozen=True)
class _CheckerDefaults:
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    delay_loop: float | None = None
    virtualhost: str | None = None

    def under(self, fields: Fields) -> _CheckerDefaults:
        """These defaults overridden by whatever `fields` sets (inner blocks win)."""
        return _CheckerDefaults(
            connect_timeout=fields.get("connect_timeout", self.connect_timeout),
            retry=fields.get("retry", self.retry),
            delay_before_retry=fields.get("delay_before_retry", self.delay_before_retry),
            delay_loop=fields.get("delay_loop", self.delay_loop),
            virtualhost=fields.get("virtualhost", self.virtualhost),
        )


class Builder:
    """Walks the statement tree once; collects model objects and diagnostics."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        self.parts = BuiltParts()
        self._global_fields: Fields = {}
        self._global_location: Location | None = None
        self._fifo_paths: dict[str, tuple[str, Location]] = {}
        self._fifo_scripts: dict[str, Command] = {}
        self._instance_statements: list[Statement] = []

    # ----------------------------------------------------------------- generic walking

    def build(self, statements: Iterable[Statement]) -> BuiltParts:
        root = Statement(keyword=_synthetic("top level"), block=tuple(statements))
        self.walk(
            root,
            keywords.TOP,
            {
                "global_defs": self._global_defs,
                "vrrp_script": self._vrrp_script,
                "vrrp_instance": self._instance_statements.append,
                "vrrp_sync_group": self._vrrp_sync_group,
                "virtual_server": self._virtual_server,
            },
        )
        self.parts.global_defs = self._make_global_defs()
        # Instances are built after global_defs, wherever it appears, since it sets defaults.
        for statement in self._instance_statements:
            self._vrrp_instance(statement)
        return self.parts

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

    def _set_command(self, fields: Fields, key: str) -> Handler:
        def handle(statement: Statement) -> None:
            command = to_command(statement, self.diagnostics, user_and_group=True)
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

    # ----------------------------------------------------------------- global_defs

    def _global_defs(self, statement: Statement) -> None:
        fields = self._global_fields
        if self._global_location is None:
            self._global_location = statement.location
        if statement.args:
            self.diagnostics.error(statement.args[0].location, "global_defs takes no name")

        def mcast(key: str, family: int) -> Handler:
            def handle(line: Statement) -> None:
                if count_args(line, self.diagnostics, 1, 1, f"{line.name} ADDRESS"):
                    value = to_ip(line.args[0], self.diagnostics, line.name, family)
                    if value is not None and not ipaddress.ip_address(value).is_multicast:
                        self.diagnostics.error(
                            line.args[0].location,
                            f"{line.name}: {value} is not a multicast address",
                        )
                    elif value is not None:
                        fields[key] = value

            return handle

        def script_user(line: Statement) -> None:
            if count_args(line, self.diagnostics, 1, 2, "script_user USER [GROUP]"):
                fields["script_user"] = line.args[0].value
                fields["script_group"] = line.args[1].value if len(line.args) > 1 else None

        def fifo(line: Statement) -> None:
            # keepalived's optional USER [GROUP] own the FIFO it creates; vipkeeper's FIFO is
            # its own user's (changing the owner would need CAP_CHOWN).
            if count_args(line, self.diagnostics, 1, 3, f"{line.name} PATH [USER [GROUP]]"):
                path = line.args[0].value
                if not path.startswith("/"):
                    self.diagnostics.error(
                        line.args[0].location, f"{line.name}: {path!r} is not an absolute path"
                    )
                    return
                if len(line.args) > 1:
                    self.diagnostics.warning(
                        line.args[1].location,
                        f"{line.name}: owner ignored, the FIFO belongs to vipkeeper's user",
                    )
                self._fifo_paths[line.name] = (path, line.location)

        def fifo_script(line: Statement) -> None:
            command = to_command(line, self.diagnostics, user_and_group=True)
            if command is not None:
                self._fifo_scripts[line.name.removesuffix("_script")] = command

        def hash_seed(line: Statement) -> None:
            if count_args(line, self.diagnostics, 1, 1, "lvs_hash_seed 0..4294967295"):
                value = to_int(line.args[0], self.diagnostics, line.name, 0, 2**32 - 1)
                if value is not None:
                    fields["lvs_hash_seed"] = value

        def sync_daemon(line: Statement) -> None:
            usage = (
                "lvs_sync_daemon INTERFACE VRRP_INSTANCE [id 0..255] [maxlen 1..65507]"
                " [port 1..65535] [ttl 1..255] [group ADDRESS]"
            )
            if not count_args(line, self.diagnostics, 2, 12, usage):
                return
            values: dict[str, object] = {}
            options = {"id": (0, 255), "maxlen": (1, 65507), "port": (1, 65535), "ttl": (1, 255)}
            rest = list(line.args[2:])
            while rest:
                option = rest.pop(0)
                if option.value not in (*options, "group") or not rest:
                    self.diagnostics.error(option.location, f"{line.name}: expected {usage}")
                    return
                argument = rest.pop(0)
                if option.value == "group":
                    group = to_ip(argument, self.diagnostics, "group", None)
                    if group is None:
                        return
                    values["group"] = group
                    continue
                low, high = options[option.value]
                number = to_int(argument, self.diagnostics, option.value, low, high)
                if number is None:
                    return
                values["sync_id" if option.value == "id" else option.value] = number
            fields["lvs_sync_daemon"] = LvsSyncDaemon(
                interface=line.args[0].value,
                instance=line.args[1].value,
                location=line.location,
                **values,  # type: ignore[arg-type]
            )

        self.walk(
            statement,
            "global_defs",
            {
                "router_id": self._set_word(fields, "router_id", "NAME"),
                "vrrp_version": self._set_int(fields, "vrrp_version", 2, 3),
                "vrrp_garp_master_delay": self._set_int(fields, "vrrp_garp_master_delay", 0, 1000),
                "vrrp_garp_master_repeat": self._set_int(
                    fields, "vrrp_garp_master_repeat", 0, 1000
                ),
                "vrrp_garp_master_refresh": self._set_int(
                    fields, "vrrp_garp_master_refresh", 0, 86400
                ),
                "vrrp_garp_master_refresh_repeat": self._set_int(
                    fields, "vrrp_garp_master_refresh_repeat", 0, 1000
                ),
                "vrrp_garp_lower_prio_delay": self._set_int(
                    fields, "vrrp_garp_lower_prio_delay", 0, 1000
                ),
                "vrrp_garp_lower_prio_repeat": self._set_int(
                    fields, "vrrp_garp_lower_prio_repeat", 0, 1000
                ),
                "vrrp_higher_prio_send_advert": self._set_flag(
                    fields, "vrrp_higher_prio_send_advert"
                ),
                "vrrp_lower_prio_no_advert": self._set_flag(fields, "vrrp_lower_prio_no_advert"),
                "vrrp_skip_check_adv_addr": self._set_flag(fields, "vrrp_skip_check_adv_addr"),
                "vrrp_strict": self._set_flag(fields, "vrrp_strict"),
                "enable_script_security": self._set_flag(fields, "enable_script_security"),
                "script_user": script_user,
                "vrrp_mcast_group4": mcast("vrrp_mcast_group4", 4),
                "vrrp_mcast_group6": mcast("vrrp_mcast_group6", 6),
                "lvs_backend": self._set_choice(
                    fields, "lvs_backend", {backend.value: backend for backend in LvsBackend}
                ),
                "lvs_hash_seed": hash_seed,
                **{name: fifo for name in NOTIFY_FIFOS},
                **{f"{name}_script": fifo_script for name in NOTIFY_FIFOS},
                "lvs_sync_daemon": sync_daemon,
            },
        )

    def _make_global_defs(self) -> GlobalDefs:
        fifos: Fields = {}
        for name, command in self._fifo_scripts.items():
            if name not in self._fifo_paths:
                self.diagnostics.warning(
                    command.location, f"{name}_script: ignored, there is no {name} to read"
                )
        seen: dict[str, str] = {}
        for name in NOTIFY_FIFOS:
            if name not in self._fifo_paths:
                continue
            path, location = self._fifo_paths[name]
            if path in seen:
                self.diagnostics.error(
                    location, f"{name}: {path} is also the {seen[path]}; each FIFO needs its own"
                )
                continue
            seen[path] = name
            fifos[name] = NotifyFifo(
                path=path, script=self._fifo_scripts.get(name), location=location
            )
        return GlobalDefs(location=self._global_location, **self._global_fields, **fifos)

    # ----------------------------------------------------------------- vrrp_script

    def _vrrp_script(self, statement: Statement) -> None:
        name = self._name_of_block(statement)
        fields: Fields = {}
        user: list[str] = []

        def script(line: Statement) -> None:
            command = to_command(line, self.diagnostics, user_and_group=False)
            if command is not None:
                fields["command"] = command

        def user_line(line: Statement) -> None:
            if count_args(line, self.diagnostics, 1, 2, "user USER [GROUP]"):
                user[:] = [token.value for token in line.args]

        self.walk(
            statement,
            "vrrp_script",
            {
                "script": script,
                "interval": self._set_seconds(fields, "interval", 0.0, allow_minimum=False),
                "timeout": self._set_seconds(fields, "timeout", 0.0, allow_minimum=False),
                "weight": self._weight_handler(fields),
                "rise": self._set_int(fields, "rise", 1, 1_000_000),
                "fall": self._set_int(fields, "fall", 1, 1_000_000),
                "user": user_line,
            },
        )
        if "command" not in fields:
            self.diagnostics.error(statement.location, "vrrp_script needs a `script PROGRAM` line")
            return
        if name is None:
            return
        if user:
            command = fields["command"]
            fields["command"] = type(command)(
                argv=command.argv,
                user=user[0],
                group=user[1] if len(user) > 1 else None,
                location=command.location,
            )
        self.parts.vrrp_scripts.append(VrrpScript(name=name, location=statement.location, **fields))

    def _weight_handler(self, fields: Fields) -> Handler:
        def handle(line: Statement) -> None:
            usage = f"weight -{TRACK_WEIGHT}..{TRACK_WEIGHT} [reverse]"
            if not count_args(line, self.diagnostics, 1, 2, usage):
                return
            value = to_int(line.args[0], self.diagnostics, "weight", -TRACK_WEIGHT, TRACK_WEIGHT)
            if value is None:
                return
            fields["weight"] = value
            if len(line.args) > 1:
                reverse = _reverse_word(line.args[1])
                if reverse is None:
                    self.diagnostics.error(
                        line.args[1].location,
                        f"weight: {line.args[1].value!r} is not valid; valid: reverse|noreverse",
                    )
                else:
                    fields["weight_reverse"] = reverse

        return handle

    # ----------------------------------------------------------------- vrrp_sync_group

    def _vrrp_sync_group(self, statement: Statement) -> None:
        name = self._name_of_block(statement)
        fields: Fields = {}
        members: list[str] = []
        member_locations: dict[str, Location] = {}
        tracked_interfaces: list[TrackedInterface] = []
        tracked_scripts: list[TrackedScript] = []

        def member_line(line: Statement) -> None:
            for token in line.words():
                if token.value in member_locations:
                    self.diagnostics.error(
                        token.location, f"group: {token.value} is listed twice in this group"
                    )
                    continue
                members.append(token.value)
                member_locations[token.value] = token.location

        def group(line: Statement) -> None:
            self._lines(line, member_line)

        self.walk(
            statement,
            "vrrp_sync_group",
            {
                "group": group,
                "track_interface": lambda line: self._lines(
                    line, self._track_interface_line(tracked_interfaces)
                ),
                "track_script": lambda line: self._lines(
                    line, self._track_script_line(tracked_scripts)
                ),
                **self._notify_handlers(fields),
            },
        )
        if not members:
            self.diagnostics.error(
                statement.location,
                "vrrp_sync_group needs a `group { INSTANCE ... }` block naming its instances",
            )
            return
        if name is None:
            return
        for member, location in member_locations.items():
            self.parts.sync_member_locations[(name, member)] = location
        self.parts.vrrp_sync_groups.append(
            VrrpSyncGroup(
                name=name,
                instances=tuple(members),
                track_interfaces=tuple(tracked_interfaces),
                track_scripts=tuple(tracked_scripts),
                location=statement.location,
                **fields,
            )
        )

    def _notify_handlers(self, fields: Fields) -> dict[str, Handler]:
        return {
            key: self._set_command(fields, key)
            for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
        }

    def _track_interface_line(self, into: list[TrackedInterface]) -> Handler:
        def handle(line: Statement) -> None:
            options = self._track_options(line, weight_required=False)
            if options is None:
                return
            weight, reverse = options
            into.append(
                TrackedInterface(
                    name=line.name,
                    weight=weight if weight is not None else 0,
                    reverse=bool(reverse),
                    location=line.location,
                )
            )

        return handle

    def _track_script_line(self, into: list[TrackedScript]) -> Handler:
        def handle(line: Statement) -> None:
            options = self._track_options(line, weight_required=False)
            if options is not None:
                weight, reverse = options
                into.append(
                    TrackedScript(
                        name=line.name, weight=weight, reverse=reverse, location=line.location
                    )
                )

        return handle

    def _track_options(
        self, line: Statement, *, weight_required: bool
    ) -> tuple[int | None, bool | None] | None:
        """`NAME [weight W] [reverse|noreverse]` → (weight, reverse); None after an error."""
        del weight_required
        weight: int | None = None
        reverse: bool | None = None
        args = list(line.args)
        index = 0
        while index < len(args):
            token = args[index]
            if token.value == "weight":
                if index + 1 >= len(args):
                    self.diagnostics.error(
                        token.location, f"weight needs a value -{TRACK_WEIGHT}..{TRACK_WEIGHT}"
                    )
                    return None
                weight = to_int(
                    args[index + 1], self.diagnostics, "weight", -TRACK_WEIGHT, TRACK_WEIGHT
                )
                if weight is None:
                    return None
                index += 2
                continue
            direction = _reverse_word(token)
            if direction is None:
                self.diagnostics.error(
                    token.location,
                    f"{token.value!r} is not valid after {line.name}; valid: "
                    f"weight -{TRACK_WEIGHT}..{TRACK_WEIGHT}, reverse, noreverse",
                )
                return None
            reverse = direction
            index += 1
        return weight, reverse

    # ----------------------------------------------------------------- vrrp_instance

    def _vrrp_instance(self, statement: Statement) -> None:
        name = self._name_of_block(statement)
        diagnostics = self.diagnostics
        fields: Fields = {}
        vips: list[VirtualIpAddress] = []
        excluded: list[VirtualIpAddress] = []
        tracked_interfaces: list[TrackedInterface] = []
        tracked_scripts: list[TrackedScript] = []
        peers: list[UnicastPeer] = []
        where: dict[str, Statement] = {}

        def remember(key: str, handler: Handler) -> Handler:
            def handle(line: Statement) -> None:
                where[key] = line
                handler(line)

            return handle

        def authentication(line: Statement) -> None:
            auth = self._authentication(line)
            if auth is not None:
                fields["authentication"] = auth
                where["authentication"] = line

        def unicast_peer(line: Statement) -> None:
            where["unicast_peer"] = line
            self._lines(line, self._unicast_peer_line(peers))

        self.walk(
            statement,
            "vrrp_instance",
            {
                "state": remember(
                    "state",
                    self._set_choice(fields, "state", {s.value: s for s in VrrpState}),
                ),
                "interface": remember("interface", self._set_word(fields, "interface", "IFNAME")),
                "virtual_router_id": remember(
                    "virtual_router_id", self._set_int(fields, "virtual_router_id", 1, 255)
                ),
                "priority": remember("priority", self._priority_handler(fields)),
                "advert_int": remember(
                    "advert_int",
                    self._set_seconds(
                        fields, "advert_int", 0.0, V2_MAX_SECONDS, allow_minimum=False
                    ),
                ),
                "version": remember("version", self._set_int(fields, "version", 2, 3)),
                "nopreempt": remember("nopreempt", self._set_flag(fields, "preempt", False)),
                "preempt": self._set_flag(fields, "preempt"),
                "preempt_delay": self._set_seconds(fields, "preempt_delay", 0.0, 1000.0),
                "authentication": authentication,
                "virtual_ipaddress": lambda line: self._lines(line, self._vip_line(vips)),
                "virtual_ipaddress_excluded": lambda line: self._lines(
                    line, self._vip_line(excluded)
                ),
                "track_interface": lambda line: self._lines(
                    line, self._track_interface_line(tracked_interfaces)
                ),
                "track_script": lambda line: self._lines(
                    line, self._track_script_line(tracked_scripts)
                ),
                "unicast_src_ip": self._set_ip(fields, "unicast_src_ip"),
                "unicast_peer": unicast_peer,
                "garp_master_delay": self._set_int(fields, "garp_master_delay", 0, 1000),
                "garp_master_repeat": self._set_int(fields, "garp_master_repeat", 0, 1000),
                "garp_master_refresh": self._set_int(fields, "garp_master_refresh", 0, 86400),
                "garp_master_refresh_repeat": self._set_int(
                    fields, "garp_master_refresh_repeat", 0, 1000
                ),
                "garp_lower_prio_delay": self._set_int(fields, "garp_lower_prio_delay", 0, 1000),
                "garp_lower_prio_repeat": self._set_int(fields, "garp_lower_prio_repeat", 0, 1000),
                "higher_prio_send_advert": self._set_flag(fields, "higher_prio_send_advert"),
                "lower_prio_no_advert": self._set_flag(fields, "lower_prio_no_advert"),
                **self._notify_handlers(fields),
                "native_ipv6": self._set_flag(fields, "native_ipv6"),
                "dont_track_primary": self._set_flag(fields, "dont_track_primary"),
                "use_vmac": remember("use_vmac", self._use_vmac_handler(fields)),
                "vmac_xmit_base": remember(
                    "vmac_xmit_base", self._set_flag(fields, "vmac_xmit_base")
                ),
                "accept": self._set_flag(fields, "accept"),
                "no_accept": self._set_flag(fields, "accept", False),
                "skip_check_adv_addr": self._set_flag(fields, "skip_check_adv_addr"),
                "strict_mode": self._set_flag(fields, "strict_mode"),
            },
        )
        if name is None:
            return
        ok = True
        if "interface" not in fields and "interface" not in where:
            diagnostics.error(
                statement.location, f"vrrp_instance {name}: missing `interface IFNAME`"
            )
            ok = False
        if "virtual_router_id" not in where:
            diagnostics.error(
                statement.location,
                f"vrrp_instance {name}: missing `virtual_router_id 1..255`"
                " (the VRID shared by every router of this virtual router)",
            )
            ok = False
        if "interface" not in fields or "virtual_router_id" not in fields:
            ok = False  # an invalid value was already reported where it was written
        ok = (
            self._check_vip_families(name, vips, native_ipv6=bool(fields.get("native_ipv6"))) and ok
        )
        family = instance_family(
            (*vips, *excluded),
            native_ipv6=bool(fields.get("native_ipv6")),
            unicast_src_ip=fields.get("unicast_src_ip"),
        )
        ok = self._resolve_version(name, fields, where, family) and ok
        ok = self._check_advert_int(fields, where) and ok
        ok = self._check_owner_rules(name, fields, where) and ok
        ok = self._check_unicast(fields, peers) and ok
        ok = self._check_strict(name, statement, fields, vips, peers, where) and ok
        if fields.get("version") == 3 and "authentication" in fields:
            diagnostics.warning(
                where["authentication"].location,
                "authentication: VRRPv3 (RFC 9568) has no authentication, ignored",
            )
            del fields["authentication"]
        ok = self._check_has_vips(name, statement, fields, vips, family) and ok
        if not ok:
            return
        self._resolve_vmac(fields, where, family)
        global_defs = self.parts.global_defs
        for key in (
            "garp_master_delay",
            "garp_master_repeat",
            "garp_master_refresh",
            "garp_master_refresh_repeat",
        ):
            fields.setdefault(key, getattr(global_defs, "vrrp_" + key))
        for key, fallback in (
            ("garp_lower_prio_delay", "garp_master_delay"),
            ("garp_lower_prio_repeat", "garp_master_repeat"),
        ):
            from_global = getattr(global_defs, "vrrp_" + key)
            fields.setdefault(key, fields[fallback] if from_global is None else from_global)
        for key in ("higher_prio_send_advert", "lower_prio_no_advert"):
            fields.setdefault(key, getattr(global_defs, "vrrp_" + key))
        fields.setdefault("skip_check_adv_addr", global_defs.vrrp_skip_check_adv_addr)
        fields.setdefault("strict_mode", global_defs.vrrp_strict)
        fields["mcast_group"] = (
            global_defs.vrrp_mcast_group6 if family == 6 else global_defs.vrrp_mcast_group4
        )
        if "version" in where:
            self.parts.explicit_versions[name] = where["version"].location
        self.parts.vrrp_instances.append(
            VrrpInstance(
                name=name,
                virtual_ipaddresses=tuple(vips),
                virtual_ipaddresses_excluded=tuple(excluded),
                track_interfaces=tuple(tracked_interfaces),
                track_scripts=tuple(tracked_scripts),
                unicast_peers=tuple(peers),
                location=statement.location,
                **fields,
            )
        )

    def _use_vmac_handler(self, fields: Fields) -> Handler:
        def handle(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 0, 1, "use_vmac [IFNAME]"):
                return
            name = line.args[0].value if line.args else ""
            if len(name) > IFNAME_MAX:
                self.diagnostics.error(
                    line.args[0].location,
                    f"use_vmac: {name!r} is longer than an interface name may be"
                    f" ({IFNAME_MAX} characters)",
                )
                return
            fields["use_vmac"] = name  # "" until the VRID is known: vrrp.{VRID}

        return handle

    def _resolve_vmac(self, fields: Fields, where: dict[str, Statement], family: int) -> None:
        if "use_vmac" not in fields:
            if fields.get("vmac_xmit_base"):
                self.diagnostics.warning(
                    where["vmac_xmit_base"].location,
                    "vmac_xmit_base: has no effect without use_vmac, ignored",
                )
                del fields["vmac_xmit_base"]
            return
        if family == 6:
            self.diagnostics.warning(
                where["use_vmac"].location,
                "use_vmac: the virtual MAC is supported for IPv4 instances only"
                " (the interface's own MAC is used), ignored",
            )
            del fields["use_vmac"]
            fields.pop("vmac_xmit_base", None)
            return
        if not fields["use_vmac"]:
            fields["use_vmac"] = f"{VMAC_DEFAULT_PREFIX}{fields['virtual_router_id']}"

    def _priority_handler(self, fields: Fields) -> Handler:
        def handle(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 1, 1, "priority 1..255"):
                return
            token = line.args[0]
            if token.value == "0":
                self.diagnostics.error(
                    token.location,
                    "priority: 0 is reserved for a master giving up (RFC 3768 §5.3.4);"
                    " valid: 1..254, or 255 for the address owner",
                )
                return
            value = to_int(
                token, self.diagnostics, "priority", 1, 255, " (255 only for the address owner)"
            )
            if value is not None:
                fields["priority"] = value

        return handle

    def _authentication(self, statement: Statement) -> Authentication | None:
        fields: Fields = {}
        self.walk(
            statement,
            "authentication",
            {
                "auth_type": self._set_word(fields, "auth_type", "PASS"),
                "auth_pass": self._set_word(fields, "auth_pass", "PASSWORD"),
            },
        )
        auth_type = fields.get("auth_type")
        password = fields.get("auth_pass")
        if auth_type is None:
            self.diagnostics.error(statement.location, "authentication: missing `auth_type PASS`")
            return None
        if auth_type == "AH":
            self.diagnostics.error(
                statement.location,
                "auth_type AH: IPsec AH authentication is not supported and ignoring it would"
                " break agreement with the peers; use auth_type PASS or remove authentication",
            )
            return None
        if auth_type != "PASS":
            self.diagnostics.error(
                statement.location, f"auth_type: {auth_type!r} is not valid; valid: PASS|AH"
            )
            return None
        if password is None or password == "":
            self.diagnostics.error(statement.location, "authentication: missing `auth_pass`")
            return None
        if len(password) > AUTH_PASS_MAX:
            self.diagnostics.error(
                statement.location,
                f"auth_pass: {len(password)} characters, but VRRP carries at most"
                f" {AUTH_PASS_MAX} (RFC 2338 §5.3.6); shorten it on every router",
            )
            return None
        return Authentication(auth_type="PASS", auth_pass=password, location=statement.location)

    def _vip_line(self, into: list[VirtualIpAddress]) -> Handler:
        def handle(line: Statement) -> None:
            vip = self._parse_vip(line)
            if vip is not None:
                into.append(vip)

        return handle

    def _parse_vip(self, line: Statement) -> VirtualIpAddress | None:
        diagnostics = self.diagnostics
        head = line.keyword
        try:
            interface = ipaddress.ip_interface(head.value)
        except ValueError:
            diagnostics.error(
                head.location,
                f"{head.value!r} is not an address; valid: ADDRESS[/PREFIX] [brd ADDRESS]"
                " [dev IFNAME] [scope SCOPE] [label LABEL]",
            )
            return None
        prefix_given = "/" in head.value
        options: Fields = {}
        args = list(line.args)
        index = 0
        while index < len(args):
            token = args[index]
            word = token.value
            if word in ("brd", "dev", "scope", "label") or word in (
                VIP_OPTIONS_WITH_VALUE_UNSUPPORTED
            ):
                if index + 1 >= len(args):
                    diagnostics.error(token.location, f"{word} needs a value")
                    return None
                value_token = args[index + 1]
                index += 2
                if word in VIP_OPTIONS_WITH_VALUE_UNSUPPORTED:
                    diagnostics.warning(token.location, f"{word}: ignored, not supported")
                    continue
                if word == "scope" and value_token.value not in SCOPES:
                    diagnostics.error(
                        value_token.location,
                        f"scope: {value_token.value!r} is not valid; valid: "
                        + "|".join(sorted(SCOPES)),
                    )
                    return None
                if word == "brd" and value_token.value not in ("+", "-"):
                    checked = to_ip(value_token, diagnostics, "brd", interface.version)
                    if checked is None:
                        return None
                key = {"brd": "broadcast", "dev": "device"}.get(word, word)
                options[key] = value_token.value
                continue
            if word in VIP_FLAGS_UNSUPPORTED:
                diagnostics.warning(token.location, f"{word}: ignored, not supported")
                index += 1
                continue
            diagnostics.error(
                token.location,
                f"{word!r} is not a virtual address option; valid: brd ADDRESS, dev IFNAME,"
                " scope SCOPE, label LABEL",
            )
            return None
        prefix = interface.network.prefixlen if prefix_given else interface.max_prefixlen
        return VirtualIpAddress(
            address=str(interface.ip), prefix_length=prefix, location=line.location, **options
        )

    def _unicast_peer_line(self, into: list[UnicastPeer]) -> Handler:
        def handle(line: Statement) -> None:
            address = to_ip(line.keyword, self.diagnostics, "unicast_peer")
            if address is None:
                return
            args = list(line.args)
            index = 0
            while index < len(args):
                token = args[index]
                if token.value in ("min_ttl", "max_ttl"):
                    self.diagnostics.warning(
                        token.location, f"{token.value}: ignored, not supported"
                    )
                    index += 2
                    continue
                self.diagnostics.error(
                    token.location,
                    f"{token.value!r} is not valid after a unicast peer; valid: ADDRESS"
                    " [min_ttl N] [max_ttl N]",
                )
                return
            into.append(UnicastPeer(address=address, location=line.location))

        return handle

    def _check_vip_families(
        self, name: str, vips: list[VirtualIpAddress], *, native_ipv6: bool
    ) -> bool:
        if not vips:
            return True
        first = vips[0].family
        if native_ipv6 and first == 4:
            self.diagnostics.error(
                vips[0].location,
                f"vrrp_instance {name}: native_ipv6 makes the instance IPv6, but {vips[0].address}"
                " is IPv4; put IPv4 addresses in virtual_ipaddress_excluded or another instance",
            )
            return False
        for vip in vips[1:]:
            if vip.family != first:
                self.diagnostics.error(
                    vip.location,
                    f"vrrp_instance {name}: {vip.address} is IPv{vip.family} but the first"
                    f" virtual address is IPv{first}; one advert carries one family, put the"
                    " others in virtual_ipaddress_excluded or another instance",
                )
                return False
        return True

    def _resolve_version(
        self, name: str, fields: Fields, where: Mapping[str, Statement], family: int
    ) -> bool:
        explicit = fields.get("version")
        if family == 6:
            if explicit == 2:
                self.diagnostics.error(
                    where["version"].location,
                    f"vrrp_instance {name}: VRRP version 2 (RFC 3768) is IPv4 only;"
                    " IPv6 virtual addresses need version 3 (RFC 9568)",
                )
                return False
            fields["version"] = 3
            return True
        if explicit is None:
            fields["version"] = self._global_fields.get("vrrp_version", 2)
        return True

    def _check_advert_int(self, fields: Fields, where: Mapping[str, Statement]) -> bool:
        if "advert_int" not in fields:
            return True
        problem = advert_int_error(version=fields["version"], seconds=fields["advert_int"])
        if problem is None:
            return True
        token = where["advert_int"].args[0]
        self.diagnostics.error(token.location, f"advert_int: {problem}")
        return False

    def _check_owner_rules(self, name: str, fields: Fields, where: Mapping[str, Statement]) -> bool:
        ok = True
        if fields.get("priority") == 255:
            state = where.get("state")
            if state is not None and fields.get("state") is VrrpState.BACKUP:
                self.diagnostics.error(
                    state.location,
                    f"vrrp_instance {name}: priority 255 means this router owns the virtual"
                    " addresses and becomes master at once (RFC 3768 §6.4.1); use state MASTER"
                    " or a priority of 1..254",
                )
                ok = False
            if fields.get("preempt") is False and "nopreempt" in where:
                self.diagnostics.error(
                    where["nopreempt"].location,
                    f"vrrp_instance {name}: nopreempt cannot apply to the address owner"
                    " (priority 255), which always preempts; lower the priority to 1..254",
                )
                ok = False
        elif fields.get("preempt") is False and fields.get("state") is VrrpState.MASTER:
            self.diagnostics.warning(
                where["nopreempt"].location,
                f"vrrp_instance {name}: nopreempt has no effect with state MASTER;"
                " use state BACKUP on every router",
            )
        return ok

    def _check_unicast(self, fields: Fields, peers: list[UnicastPeer]) -> bool:
        source = fields.get("unicast_src_ip")
        ok = True
        families = {ipaddress.ip_address(peer.address).version for peer in peers}
        if source is not None:
            families.add(ipaddress.ip_address(source).version)
        if len(families) > 1:
            for peer in peers:
                self.diagnostics.error(
                    peer.location,
                    "unicast_peer: peers and unicast_src_ip must all be the same address family",
                )
                ok = False
                break
        return ok

    def _check_has_vips(
        self,
        name: str,
        statement: Statement,
        fields: Fields,
        vips: list[VirtualIpAddress],
        family: int,
    ) -> bool:
        """keepalived refuses an instance without virtual addresses when it speaks VRRPv3 or
        IPv6 (strict mode has its own check) and only warns for VRRPv2 over IPv4."""
        if vips or fields.get("strict_mode", self._global_fields.get("vrrp_strict", False)):
            return True  # strict mode's own check reports a missing address
        if family == 6 or fields.get("version") == 3:
            self.diagnostics.error(
                statement.location,
                f"vrrp_instance {name}: no virtual_ipaddress; an IPv{family} VRRPv"
                f"{fields.get('version')} instance needs at least one (as keepalived requires)",
            )
            return False
        self.diagnostics.warning(
            statement.location,
            f"vrrp_instance {name}: no virtual_ipaddress, so no address will move",
        )
        return True

    def _check_strict(
        self,
        name: str,
        statement: Statement,
        fields: Fields,
        vips: list[VirtualIpAddress],
        peers: list[UnicastPeer],
        where: Mapping[str, Statement],
    ) -> bool:
        strict = fields.get("strict_mode", self._global_fields.get("vrrp_strict", False))
        if not strict:
            return True
        ok = True
        if not vips:
            self.diagnostics.error(
                statement.location,
                f"vrrp_instance {name}: strict mode needs at least one virtual_ipaddress",
            )
            ok = False
        if peers:
            self.diagnostics.error(
                where["unicast_peer"].location,
                f"vrrp_instance {name}: strict mode forbids unicast_peer (VRRP is multicast)",
            )
            ok = False
        if "authentication" in where:
            self.diagnostics.error(
                where["authentication"].location,
                f"vrrp_instance {name}: strict mode forbids authentication (RFC 3768 removed it)",
            )
            ok = False
        return ok

    # ----------------------------------------------------------------- virtual_server

    def _virtual_server(self, statement: Statement) -> None:
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

        def method(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 1, 8, f"{line.name} DR|NAT"):
                return
            token = line.args[0]
            if token.value in ("DR", "NAT") and len(line.args) == 1:
                fields["method"] = LvsMethod(token.value)
            elif token.value == "TUN":
                self.diagnostics.warning(
                    token.location,
                    f"{line.name} TUN: tunnelling is not supported, virtual server ignored",
                )
                skip.append("TUN")
            else:
                self.diagnostics.error(
                    token.location, f"{line.name}: {token.value!r} is not valid; valid: DR|NAT"
                )

        def protocol(line: Statement) -> None:
            if not count_args(line, self.diagnostics, 1, 1, "protocol TCP|UDP"):
                return
            token = line.args[0]
            if token.value in ("TCP", "UDP"):
                fields["protocol"] = Protocol(token.value)
            elif token.value == "SCTP":
                self.diagnostics.warning(
                    token.location, "protocol SCTP: not supported, virtual server ignored"
                )
                skip.append("SCTP")
            else:
                self.diagnostics.error(
                    token.location, f"protocol: {token.value!r} is not valid; valid: TCP|UDP"
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
        defaults = _CheckerDefaults().under(fields)
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
        inherited: _CheckerDefaults,
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
            made = self._checker(kind, line, defaults)
            if made is not None:
                built.append(made)
        return RealServer(
            address=address,
            port=port,
            checkers=tuple(built),
            location=statement.location,
            **fields,
        )

    def _checker(
        self, kind: str, statement: Statement, inherited: _CheckerDefaults
    ) -> Checker | None:
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

            def misc_path(line: Statement) -> None:
                command = to_command(line, self.diagnostics, user_and_group=False)
                if command is not None:
                    misc["command"] = command

            def user_line(line: Statement) -> None:
                if count_args(line, self.diagnostics, 1, 2, "user USER [GROUP]"):
                    user[:] = [token.value for token in line.args]

            handlers.update(
                {
                    "misc_path": misc_path,
                    "misc_timeout": self._set_seconds(
                        misc, "misc_timeout", 0.0, allow_minimum=False
                    ),
                    "misc_dynamic": self._set_flag(misc, "misc_dynamic"),
                    "user": user_line,
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
            if user:
                command = misc["command"]
                misc["command"] = type(command)(
                    argv=command.argv,
                    user=user[0],
                    group=user[1] if len(user) > 1 else None,
                    location=command.location,
                )
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


def _reverse_word(token: Token) -> bool | None:
    if token.value == "reverse":
        return True
    if token.value in ("noreverse", "no_reverse"):
        return False
    return None


def _synthetic(value: str) -> Token:
    return Token(kind=TokenKind.WORD, value=value, location=Location(file="", line=0, column=0))
