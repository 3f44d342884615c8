"""How the VRRP sockets are read: lazily or eagerly, by the loop or by the autopilot.

Owns the two rules, decided from the plan and the instances' states; the daemon applies them to
the socket pool and the driver. Decides nothing about the protocol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from vipkeeper.assemble import Plan
from vipkeeper.core.states import State
from vipkeeper.core.vrrp import VrrpInstance


def lazy_links(instances: Iterable[VrrpInstance]) -> dict[tuple[str, int], bool]:
    """For each (interface, family): read its VRRP socket lazily, as every instance on it is a
    Backup.

    A Backup only needs its packets when its Master_Down_Timer is due (the driver drains lazy
    sockets before every timer) or when a Master leaves with priority 0 (the socket's doorbell);
    a Master, or an instance starting or in FAULT, reads every packet as it comes.
    """
    all_backup: dict[tuple[str, int], bool] = {}
    for instance in instances:
        key = (instance.settings.interface, instance.settings.family)
        all_backup[key] = all_backup.get(key, True) and instance.state is State.BACKUP
    return all_backup


def pilotable(plan: Plan) -> set[str]:
    """Instances the autopilot may carry: not in a sync group, and alone on their socket (a
    Watch reads the socket by itself; several instances there stay with the loop, which batches
    their wake-ups)."""
    sharing = Counter((s.interface, s.family) for s in plan.settings.values())
    return {
        name
        for name in plan.solo
        if sharing[(plan.settings[name].interface, plan.settings[name].family)] == 1
    }
