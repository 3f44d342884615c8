"""The global_defs block: router id, VRRP and GARP defaults, notify FIFOs, LVS settings.

Owns `GlobalDefs`; several global_defs blocks add up, and the FIFO checks run once at the end.
"""

from __future__ import annotations

import ipaddress

from vipkeeper.config.blocks.parts import BuiltParts, Fields
from vipkeeper.config.blocks.setters import Handler
from vipkeeper.config.blocks.walker import BlockReader
from vipkeeper.config.diagnostics import Diagnostics, Location
from vipkeeper.config.model import (
    NOTIFY_FIFOS,
    Command,
    GlobalDefs,
    LvsBackend,
    LvsSyncDaemon,
    NotifyFifo,
)
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args, to_command, to_int, to_ip


class GlobalDefsReader(BlockReader):
    """Collects every global_defs block; `make()` gives the one `GlobalDefs`."""

    def __init__(self, diagnostics: Diagnostics, parts: BuiltParts) -> None:
        super().__init__(diagnostics, parts)
        self._global_fields: Fields = {}
        self._global_location: Location | None = None
        self._fifo_paths: dict[str, tuple[str, Location]] = {}
        self._fifo_scripts: dict[str, Command] = {}

    def read(self, statement: Statement) -> None:
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
                "vrrp_peer_filter": self._set_flag(fields, "vrrp_peer_filter"),
                **{name: fifo for name in NOTIFY_FIFOS},
                **{f"{name}_script": fifo_script for name in NOTIFY_FIFOS},
                "lvs_sync_daemon": sync_daemon,
            },
        )

    def make(self) -> GlobalDefs:
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
