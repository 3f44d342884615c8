"""The lab's Prometheus follows a failover: it scrapes both directors' `/metrics` (every
SCRAPE_INTERVAL), sees dir1 as MASTER (keepalived_vrrp_state 2, keepalived-exporter's encoding)
and dir2 as BACKUP (1); after `docker kill dir1`, dir1 is no longer MASTER to Prometheus (its
target is down and its series go stale) and dir2 is MASTER with keepalived_become_master_total
one higher. Queries go through Prometheus's HTTP API from the client container."""

from __future__ import annotations

import pytest
from harness import Lab, wait_until
from harness.faults import Kill
from harness.prometheus import value
from harness.topology import REACTION_MARGIN, SCRAPE_INTERVAL

pytestmark = [pytest.mark.faults, pytest.mark.compose_only("the Compose lab's Prometheus")]

MASTER, BACKUP = 2.0, 1.0  # keepalived_vrrp_state values
INSTANCE = "VI_1"  # lab/dir*/keepalived.conf
# Prometheus starts with the lab: its first scrapes and a sample of each series.
FIRST_SCRAPES = 30.0


def state(lab: Lab, director: str) -> float | None:
    return value(lab, f'max(keepalived_vrrp_state{{director="{director}",iname="{INSTANCE}"}})')


def became_master(lab: Lab, director: str) -> float | None:
    return value(lab, f'keepalived_become_master_total{{director="{director}",iname="{INSTANCE}"}}')


def target_up(lab: Lab, director: str) -> float | None:
    return value(lab, f'up{{director="{director}"}}')


def test_prometheus_sees_the_master_move_across_a_kill(healthy_lab: Lab) -> None:
    topo = healthy_lab.topology
    old = topo.preferred_master.name
    (new,) = set(topo.director_names) - {old}
    wait_until(
        lambda: state(healthy_lab, old) == MASTER and state(healthy_lab, new) == BACKUP,
        timeout=FIRST_SCRAPES,
        interval=SCRAPE_INTERVAL,
        what=f"Prometheus to see {old} MASTER and {new} BACKUP",
    )
    before = became_master(healthy_lab, new)
    assert before is not None

    Kill(healthy_lab, old).apply()

    # dir2 is Master within its Master_Down_Interval; Prometheus sees it at the next scrape.
    bound = topo.director(new).master_down_interval + 2 * SCRAPE_INTERVAL + REACTION_MARGIN
    wait_until(
        lambda: state(healthy_lab, new) == MASTER,
        timeout=bound,
        interval=SCRAPE_INTERVAL / 2,
        what=f"Prometheus to see {new} MASTER",
    )
    after = became_master(healthy_lab, new)
    assert after is not None and after >= before + 1, (before, after)
    wait_until(
        lambda: target_up(healthy_lab, old) == 0 and state(healthy_lab, old) != MASTER,
        timeout=bound,
        interval=SCRAPE_INTERVAL / 2,
        what=f"Prometheus to see {old} down and no longer MASTER",
    )
