"""The closed sets of words the VRRP core shares with its callers, one enum each.

Owns an instance's state, the states a notify order names, whom it is for, what a sync group
asks of a member and which kind of tracked object an event names. String enums: they print,
log and serialise as keepalived's words.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A VRRP instance's state (RFC 9568 §6.4)."""

    INITIALIZE = "INITIALIZE"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"


class NotifyState(StrEnum):
    """The state a notify script is run for: keepalived's notify_master/backup/fault/stop."""

    MASTER = "MASTER"
    BACKUP = "BACKUP"
    FAULT = "FAULT"
    STOP = "STOP"


class NotifyTarget(StrEnum):
    """Whom a notify order is for: keepalived's first `notify` argument."""

    INSTANCE = "INSTANCE"
    GROUP = "GROUP"


class GroupRequest(StrEnum):
    """What a vrrp_sync_group asks of a member: follow MASTER or BACKUP, hold FAULT, or leave
    the group fault (FAULT_CLEARED)."""

    MASTER = "MASTER"
    BACKUP = "BACKUP"
    FAULT = "FAULT"
    FAULT_CLEARED = "FAULT_CLEARED"


class TrackKind(StrEnum):
    """Which table a tracked object's name belongs to."""

    INTERFACE = "interface"
    SCRIPT = "script"
