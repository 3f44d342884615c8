"""The kernel's IPVS connection-sync daemon, driven over IPVS generic netlink.

Owns: the IPVS_CMD_NEW_DAEMON / IPVS_CMD_DEL_DAEMON messages (pure functions, unit-tested
without a kernel) and `SyncDaemons`, which keeps the kernel's Master or Backup sync thread in
step with one VRRP instance as keepalived does: a Backup thread from start-up, a Master thread
(and no Backup thread) while the instance is MASTER, nothing after stop.
Must never: decide the VRRP state (it is told), or block the event loop.

Kernel facts (include/uapi/linux/ip_vs.h, net/netfilter/ipvs/ip_vs_ctl.c): the daemon's
settings are the nested attribute IPVS_CMD_ATTR_DAEMON holding STATE (u32: 1 Master, 2 Backup),
MCAST_IFN (string), SYNC_ID (u32), and optionally SYNC_MAXLEN (u16), MCAST_GROUP (IPv4, network
order) or MCAST_GROUP6, MCAST_PORT (u16, host order), MCAST_TTL (u8); a missing optional value
takes the kernel's default (group 224.0.0.81, port 8848, ttl 1). DEL_DAEMON needs only STATE.
The Master thread multicasts every new and changed connection of this namespace's IPVS table;
the Backup thread inserts what it hears into its own table, so a Backup that takes over already
knows where each established connection goes.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from pyroute2.ipvs import AsyncIPVS
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, genlmsg, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import ipvs as genl_ipvs

from vipkeeper.config.model import LvsSyncDaemon
from vipkeeper.core.states import State

log = logging.getLogger("vipkeeper.lvs")

IP_VS_STATE_MASTER = 1
IP_VS_STATE_BACKUP = 2
STATE_NAMES = {IP_VS_STATE_MASTER: "master", IP_VS_STATE_BACKUP: "backup"}


class SyncDaemonMessage(genlmsg):  # type: ignore[misc]
    """An IPVS generic-netlink message whose IPVS_CMD_ATTR_DAEMON is decoded as its nested
    attributes (pyroute2's own `ipvsmsg` leaves it opaque). Not derived from `ipvsmsg`: pyroute2
    compiles an nla_map once per class hierarchy, and the parent's would win."""

    prefix = "IPVS_CMD_ATTR_"
    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "hex"),
        ("IPVS_CMD_ATTR_DEST", "hex"),
        ("IPVS_CMD_ATTR_DAEMON", "daemon"),
    )

    class daemon(nla):  # type: ignore[misc]  # pyroute2 names a nested attribute class after its nla_map type
        prefix = "IPVS_DAEMON_ATTR_"
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "ip4addr"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "ip6addr"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )


def _message(command: int, attrs: list[tuple[str, Any]]) -> SyncDaemonMessage:
    message = SyncDaemonMessage()
    message["cmd"] = command
    message["version"] = genl_ipvs.GENL_VERSION
    message["attrs"] = [("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs})]
    return message


def start_message(settings: LvsSyncDaemon, state: int) -> SyncDaemonMessage:
    """IPVS_CMD_NEW_DAEMON: start the `state` thread with the configured settings."""
    attrs: list[tuple[str, Any]] = [
        ("IPVS_DAEMON_ATTR_STATE", state),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", settings.interface),
        ("IPVS_DAEMON_ATTR_SYNC_ID", settings.sync_id or 0),
    ]
    if settings.maxlen is not None:
        attrs.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", settings.maxlen))
    if settings.group is not None:
        v6 = ":" in settings.group
        attrs.append((f"IPVS_DAEMON_ATTR_MCAST_GROUP{'6' if v6 else ''}", settings.group))
    if settings.port is not None:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_PORT", settings.port))
    if settings.ttl is not None:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_TTL", settings.ttl))
    return _message(genl_ipvs.IPVS_CMD_NEW_DAEMON, attrs)


def stop_message(state: int) -> SyncDaemonMessage:
    """IPVS_CMD_DEL_DAEMON: stop the `state` thread."""
    return _message(genl_ipvs.IPVS_CMD_DEL_DAEMON, [("IPVS_DAEMON_ATTR_STATE", state)])


class SyncDaemons:
    """Keeps the kernel's sync thread matching one VRRP instance's state."""

    def __init__(self, settings: LvsSyncDaemon, *, netns: str | None = None) -> None:
        self.settings = settings
        self._netns = netns
        self._socket: AsyncIPVS | None = None
        self.running: set[int] = set()

    async def _send(self, message: SyncDaemonMessage) -> None:
        if self._socket is None:
            sock = AsyncIPVS(netns=self._netns) if self._netns else AsyncIPVS()
            await sock.setup_endpoint()
            self._socket = sock
        responses = await self._socket.nlm_request(
            message, msg_type=self._socket.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK
        )
        async for _ in responses:
            pass

    async def _start(self, state: int) -> None:
        try:
            await self._send(start_message(self.settings, state))
        except NetlinkError as error:
            if error.code != errno.EEXIST:  # already running (e.g. left by an earlier run)
                raise
        self.running.add(state)
        log.info(
            "LVS: sync daemon %s started on %s (sync id %d)",
            STATE_NAMES[state],
            self.settings.interface,
            self.settings.sync_id or 0,
        )

    async def _stop(self, state: int) -> None:
        try:
            await self._send(stop_message(state))
        except NetlinkError as error:
            if error.code != errno.ESRCH:  # not running
                raise
        self.running.discard(state)
        log.info("LVS: sync daemon %s stopped", STATE_NAMES[state])

    async def follow(self, vrrp_state: State) -> None:
        """The instance entered `vrrp_state`: Master thread on MASTER, else Backup thread."""
        wanted = IP_VS_STATE_MASTER if vrrp_state == State.MASTER else IP_VS_STATE_BACKUP
        for state in sorted(self.running - {wanted}):
            await self._stop(state)
        if wanted not in self.running:
            await self._start(wanted)

    async def stop(self) -> None:
        for state in sorted(self.running):
            await self._stop(state)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
