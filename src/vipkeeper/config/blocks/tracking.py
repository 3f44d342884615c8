"""vrrp_script and vrrp_sync_group blocks, and the tracking lines instances share with groups.

Owns `track_interface`/`track_script` lines, their `weight W [reverse]`, and notify commands.
"""

from __future__ import annotations

from vipkeeper.config.blocks.parts import Fields
from vipkeeper.config.blocks.setters import Handler, run_as
from vipkeeper.config.blocks.walker import BlockReader
from vipkeeper.config.diagnostics import Location
from vipkeeper.config.lexer import Token
from vipkeeper.config.model import TrackedInterface, TrackedScript, VrrpScript, VrrpSyncGroup
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args, to_int

TRACK_WEIGHT = 253
NOTIFY_KEYWORDS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")


class TrackingReader(BlockReader):
    """Reads vrrp_script and vrrp_sync_group; makes the tracking and notify handlers."""

    def vrrp_script(self, statement: Statement) -> None:
        name = self._name_of_block(statement)
        fields: Fields = {}
        user: list[str] = []

        self.walk(
            statement,
            "vrrp_script",
            {
                "script": self._set_command(fields, "command", user_and_group=False),
                "interval": self._set_seconds(fields, "interval", 0.0, allow_minimum=False),
                "timeout": self._set_seconds(fields, "timeout", 0.0, allow_minimum=False),
                "weight": self._weight_handler(fields),
                "rise": self._set_int(fields, "rise", 1, 1_000_000),
                "fall": self._set_int(fields, "fall", 1, 1_000_000),
                "user": self._set_user(user),
            },
        )
        if "command" not in fields:
            self.diagnostics.error(statement.location, "vrrp_script needs a `script PROGRAM` line")
            return
        if name is None:
            return
        fields["command"] = run_as(fields["command"], user)
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

    def vrrp_sync_group(self, statement: Statement) -> None:
        name = self._name_of_block(statement)
        fields: Fields = {}
        members: list[str] = []
        member_locations: dict[str, Location] = {}

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
                **self.track_handlers(fields),
                **self.notify_handlers(fields),
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
                location=statement.location,
                **fields,
            )
        )

    def notify_handlers(self, fields: Fields) -> dict[str, Handler]:
        return {
            key: self._set_command(fields, key)
            for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
        }

    def track_handlers(self, fields: Fields) -> dict[str, Handler]:
        """The `track_interface { }` and `track_script { }` blocks, read into the instance's or
        group's `track_interfaces` and `track_scripts` fields, in the file's order."""
        interfaces: list[TrackedInterface] = []
        scripts: list[TrackedScript] = []
        fields["track_interfaces"] = fields["track_scripts"] = ()

        def interface_lines(line: Statement) -> None:
            self._lines(line, self._track_interface_line(interfaces))
            fields["track_interfaces"] = tuple(interfaces)

        def script_lines(line: Statement) -> None:
            self._lines(line, self._track_script_line(scripts))
            fields["track_scripts"] = tuple(scripts)

        return {"track_interface": interface_lines, "track_script": script_lines}

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


def _reverse_word(token: Token) -> bool | None:
    if token.value == "reverse":
        return True
    if token.value in ("noreverse", "no_reverse"):
        return False
    return None
