"""The vrrp_instance block: its keywords, virtual addresses, peers and the rules between them.

Owns the instance-level checks (family, version, advert_int, owner, strict mode) and folds the
global GARP defaults into each instance; an instance with an error is not built.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from vipkeeper.config.blocks.parts import BuiltParts, Fields
from vipkeeper.config.blocks.setters import Handler
from vipkeeper.config.blocks.tracking import TrackingReader
from vipkeeper.config.blocks.walker import BlockReader
from vipkeeper.config.diagnostics import Diagnostics
from vipkeeper.config.model import (
    Authentication,
    UnicastPeer,
    VirtualIpAddress,
    VrrpInstance,
    VrrpState,
    instance_family,
)
from vipkeeper.config.parser import Statement
from vipkeeper.config.values import count_args, to_int, to_ip
from vipkeeper.core.timing import V2_MAX_SECONDS, advert_int_error

AUTH_PASS_MAX = 8  # RFC 2338 §5.3.6: the 8-octet Authentication Data field
IFNAME_MAX = 15  # IFNAMSIZ (16) less the terminating NUL
VMAC_DEFAULT_PREFIX = "vrrp."  # keepalived's name for a virtual MAC interface: vrrp.{VRID}
SCOPES = frozenset({"site", "link", "host", "nowhere", "global"})
VIP_OPTIONS_WITH_VALUE_UNSUPPORTED = frozenset({"peer", "preferred_lft", "track_group"})
VIP_FLAGS_UNSUPPORTED = frozenset(
    {"home", "-nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track", "use_vmac"}
)


class InstanceReader(BlockReader):
    """Reads vrrp_instance blocks, after global_defs (whose defaults they take)."""

    def __init__(
        self, diagnostics: Diagnostics, parts: BuiltParts, tracking: TrackingReader
    ) -> None:
        super().__init__(diagnostics, parts)
        self._tracking = tracking

    def read(self, statement: Statement) -> None:
        name = self._name_of_block(statement)
        diagnostics = self.diagnostics
        fields: Fields = {}
        vips: list[VirtualIpAddress] = []
        excluded: list[VirtualIpAddress] = []
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
                **self._tracking.track_handlers(fields),
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
                **self._tracking.notify_handlers(fields),
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
            fields["version"] = self.parts.global_defs.vrrp_version
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
        if vips or fields.get("strict_mode", self.parts.global_defs.vrrp_strict):
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
        strict = fields.get("strict_mode", self.parts.global_defs.vrrp_strict)
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
