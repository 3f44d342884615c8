"""What reading the blocks produces: the model objects and where some of them were written.

Owns `BuiltParts`, the one record every block reader appends to; `validate` reads it after.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vipkeeper.config.diagnostics import Location
from vipkeeper.config.model import GlobalDefs, VrrpInstance, VrrpScript, VrrpSyncGroup

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    from typing import Any

    from vipkeeper.config.lvs_model import VirtualServer  # loaded with the first virtual_server

Fields = dict[str, "Any"]


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
