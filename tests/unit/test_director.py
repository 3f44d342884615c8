"""The director's mapping from keepalived.conf to health specs and load-balancer state.

Proves: real servers inherit the virtual server's port; checkers connect to connect_ip /
connect_port when given and to the real server otherwise; status_code ranges become the accepted
set; checker timing reaches the health core; the jhash seed is the same for every parse of the
same configuration and is `lvs_hash_seed` when that is set; the Maglev table is sized by the
configured real servers, not the healthy ones; and `Director.desired()` follows the health
core's pool changes, quorum and sorry server, with the apply loop handing the backend one whole
desired state (coalescing a burst) and clearing it on stop.
No network, no clock: the checkers are never run here (only a loop for the apply task).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence

from vipkeeper import director as director_module
from vipkeeper.config import lvs_model, model, parse_text
from vipkeeper.core import health, lb, maglev
from vipkeeper.director import Director, hash_seed, health_spec, make_checker, virtual_service
from vipkeeper.io import checkers as io_checkers
from vipkeeper.io import lvs_sync
from vipkeeper.io.scripts import ScriptRunner
from vipkeeper.testing.samples import parsed

SERVICE = """
virtual_server 10.0.0.1 8080 {
    delay_loop 2
    lb_algo mh
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.2 {
        TCP_CHECK {
            connect_timeout 2
            retry 0
        }
    }
    real_server 127.0.0.3 9090 {
        weight 3
        HTTP_GET {
            url {
                path /health
                status_code 200 204-206
            }
            connect_ip 127.0.0.9
            connect_port 81
            retry 4
            delay_before_retry 0.5
        }
    }
}
"""

QUORUM = """
virtual_server 10.0.0.1 80 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    quorum 2
    sorry_server 127.0.0.9 80
    real_server 127.0.0.2 80 {
        TCP_CHECK {
            retry 0
        }
    }
    real_server 127.0.0.3 80 {
        TCP_CHECK {
            retry 0
        }
    }
}
"""

NO_CHECKERS = """
virtual_server 10.0.0.1 80 {
    lb_algo wrr
    lb_kind DR
    real_server 127.0.0.2 80 {
        weight 2
    }
    real_server 127.0.0.3 80 {
    }
}
"""


def only_vs(config: model.Config) -> lvs_model.VirtualServer:
    (vs,) = config.virtual_servers
    return vs


class FakeBackend:
    """A LoadBalancerBackend that records what it was asked to do."""

    name = "fake"

    def __init__(self) -> None:
        self.applied: list[tuple[lb.VirtualServer, ...]] = []
        self.cleared = 0

    async def apply(self, desired: Sequence[lb.VirtualServer]) -> None:
        self.applied.append(tuple(desired))

    async def clear(self) -> None:
        self.cleared += 1


def make_director(text: str, backend: FakeBackend | None = None) -> Director:
    return Director(
        parsed(text), runner=ScriptRunner(), backend=backend or FakeBackend(), rng=random.Random(7)
    )


def endpoint(address: str, port: int) -> health.Endpoint:
    return health.Endpoint(address=address, port=port)


# -- configuration -> health specs and checkers ----------------------------------------------------


def test_real_server_without_a_port_inherits_the_virtual_servers_port():
    spec = health_spec(only_vs(parsed(SERVICE)), random.Random(1))
    assert [rs.server for rs in spec.real_servers] == [
        endpoint("127.0.0.2", 8080),
        endpoint("127.0.0.3", 9090),
    ]
    assert [rs.weight for rs in spec.real_servers] == [1, 3]


def test_checkers_connect_to_connect_ip_and_port_when_given_else_to_the_real_server():
    vs = only_vs(parsed(SERVICE))
    tcp_rs, http_rs = vs.real_servers
    runner = ScriptRunner()

    tcp = make_checker(vs, tcp_rs, tcp_rs.checkers[0], runner)
    http = make_checker(vs, http_rs, http_rs.checkers[0], runner)

    assert tcp == io_checkers.TcpCheck(address="127.0.0.2", port=8080, connect_timeout=2.0)
    assert isinstance(http, io_checkers.HttpGetCheck)
    assert (http.address, http.port) == ("127.0.0.9", 81)
    assert http.connect_timeout == 5.0  # keepalived's default when not configured


def test_status_code_ranges_become_the_set_of_accepted_codes():
    vs = only_vs(parsed(SERVICE))
    http_rs = vs.real_servers[1]
    http = make_checker(vs, http_rs, http_rs.checkers[0], ScriptRunner())
    assert isinstance(http, io_checkers.HttpGetCheck)
    (url,) = http.urls
    assert url.path == "/health"
    assert url.status_codes == frozenset({200, 204, 205, 206})
    assert [code for code in range(100, 600) if url.status_ok(code)] == [200, 204, 205, 206]


def test_checker_timing_reaches_the_health_core():
    spec = health_spec(only_vs(parsed(SERVICE)), random.Random(1))
    (tcp,), (http,) = (rs.checkers for rs in spec.real_servers)
    assert (tcp.delay_loop, tcp.retry, tcp.delay_before_retry) == (2.0, 0, 1.0)
    assert (http.delay_loop, http.retry, http.delay_before_retry) == (2.0, 4, 0.5)
    # the warm-up spreads first checks over one delay_loop
    assert 0 <= tcp.initial_delay <= 2.0 and 0 <= http.initial_delay <= 2.0


def test_quorum_and_sorry_server_reach_the_health_core():
    spec = health_spec(only_vs(parsed(QUORUM)), random.Random(1))
    assert spec.quorum == 2
    assert spec.sorry_server == endpoint("127.0.0.9", 80)
    assert spec.name == "TCP 10.0.0.1:80"
    assert not spec.sorry_server_inhibit


def test_sorry_server_inhibit_reaches_the_health_core():
    text = QUORUM.replace("    sorry_server 127.0.0.9 80\n", "    sorry_server 127.0.0.9 80\n"
                          "    sorry_server_inhibit\n")  # fmt: skip
    result = parse_text(text)
    assert result.diagnostics == [], [d.format() for d in result.diagnostics]
    assert result.config is not None and only_vs(result.config).sorry_server_inhibit
    assert health_spec(only_vs(result.config), random.Random(1)).sorry_server_inhibit


# -- configuration -> load-balancer service ----------------------------------------------------


def test_virtual_service_carries_scheduler_method_and_protocol():
    config = parsed(SERVICE)
    service = virtual_service(config, only_vs(config))
    assert (service.address, service.port) == ("10.0.0.1", 8080)
    assert service.scheduler is lb.Scheduler.MAGLEV_HASH
    assert service.method is lb.ForwardingMethod.NAT
    assert service.protocol is lb.Protocol.TCP


def test_hash_seed_is_the_same_for_two_parses_of_the_same_configuration():
    first, second = parsed(SERVICE), parsed(SERVICE)
    assert virtual_service(first, only_vs(first)) == virtual_service(second, only_vs(second))
    other = parsed(SERVICE.replace("8080", "8081"))
    # derived from the service, so another service (most likely) hashes differently
    assert hash_seed(other, only_vs(other)) != hash_seed(first, only_vs(first))


def test_hash_seed_is_lvs_hash_seed_from_global_defs_when_set():
    config = parsed("global_defs {\n    lvs_hash_seed 4660\n}\n" + SERVICE)
    assert config.global_defs.lvs_hash_seed == 4660
    assert virtual_service(config, only_vs(config)).hash_seed == 4660
    other = parsed("global_defs {\n    lvs_hash_seed 4660\n}\n" + SERVICE.replace("8080", "8081"))
    assert virtual_service(other, only_vs(other)).hash_seed == 4660


def test_table_size_is_sized_by_the_configured_real_servers_not_the_healthy_ones():
    director = make_director(QUORUM.replace("quorum 2", "quorum 1").replace("sorry_server", "#"))
    two, one = maglev.table_size_for(2), maglev.table_size_for(1)
    assert two != one
    (desired,) = director.desired()
    assert desired.service.table_size == two

    down = health.PoolChanged(
        virtual_server="TCP 10.0.0.1:80",
        pool=health.Pool(real_servers=(health.RealServer.at(endpoint("127.0.0.2", 80), 1),)),
    )
    director._emit([down])

    (desired,) = director.desired()
    assert [s.address for s in desired.real_servers] == ["127.0.0.2"]
    assert desired.service.table_size == two
    # The reference pool still lists both configured servers, so only the failed one's buckets move.
    assert [name for name, _ in desired.service.configured_weights] == [
        "127.0.0.2:80",
        "127.0.0.3:80",
    ]


# -- Director.desired() and the apply loop --------------------------------------------------------


def test_desired_follows_pool_changes():
    director = make_director(SERVICE)
    (before,) = director.desired()
    assert before.real_servers == ()  # nothing reported yet: nothing to forward to

    director._emit(
        [
            health.PoolChanged(
                virtual_server="TCP 10.0.0.1:8080",
                pool=health.Pool(
                    real_servers=(
                        health.RealServer.at(endpoint("127.0.0.2", 8080), 1),
                        health.RealServer.at(endpoint("127.0.0.3", 9090), 0),
                    )
                ),
            )
        ]
    )

    (after,) = director.desired()
    assert after.real_servers == (
        lb.RealServer(address="127.0.0.2", port=8080, weight=1),
        lb.RealServer(address="127.0.0.3", port=9090, weight=0),
    )
    assert after.sorry_server is None and after.in_quorum
    assert lb.forwarding_servers(after) == (lb.RealServer(address="127.0.0.2", port=8080),)


def test_quorum_loss_in_the_health_core_sends_traffic_to_the_sorry_server():
    director = make_director(QUORUM)
    monitor = director.monitor
    director._emit(monitor.start(0.0))
    (healthy,) = director.desired()
    assert healthy.in_quorum and healthy.sorry_server is None
    assert {s.address for s in lb.forwarding_servers(healthy)} == {"127.0.0.2", "127.0.0.3"}

    started = monitor.handle_timer(10.0)
    checks = [effect.checker for effect in started if isinstance(effect, health.RunCheck)]
    first = next(c for c in checks if c.server == endpoint("127.0.0.2", 80))
    director._emit(monitor.handle(health.CheckFailed(checker=first, reason="refused"), 10.0))

    (lost,) = director.desired()
    assert not lost.in_quorum
    assert lb.forwarding_servers(lost) == (lb.RealServer(address="127.0.0.9", port=80),)

    for checker in checks:
        if checker != first:
            director._emit(monitor.handle(health.CheckSucceeded(checker=checker), 10.5))
    director._emit(monitor.handle_timer(20.0))
    director._emit(monitor.handle(health.CheckSucceeded(checker=first), 20.0))

    (regained,) = director.desired()
    assert regained.in_quorum
    assert {s.address for s in lb.forwarding_servers(regained)} == {"127.0.0.2", "127.0.0.3"}


async def _until(condition: object, steps: int = 200) -> None:
    """Let the loop run until `condition()` holds (bounded by loop iterations, not time)."""
    for _ in range(steps):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def _started(text: str, backend: FakeBackend) -> Director:
    """A director on `backend` that has started and applied its first pool."""
    director = make_director(text, backend)
    await director.start()
    await _until(lambda: backend.applied)
    return director


async def test_start_applies_the_initial_pool_and_stop_clears_the_backend():
    backend = FakeBackend()
    director = await _started(NO_CHECKERS, backend)
    await director.stop()

    ((desired,),) = backend.applied
    assert desired.service.scheduler is lb.Scheduler.WEIGHTED_ROUND_ROBIN
    assert desired.real_servers == (
        lb.RealServer(address="127.0.0.2", port=80, weight=2),
        lb.RealServer(address="127.0.0.3", port=80, weight=1),
    )
    assert director.applied == (desired,)
    assert backend.cleared == 1


async def test_stop_without_release_leaves_the_applied_pool_in_the_backend():
    backend = FakeBackend()
    director = await _started(NO_CHECKERS, backend)
    await director.stop(release=False)

    assert len(backend.applied) == 1
    assert backend.cleared == 0


async def test_a_burst_of_pool_changes_costs_one_apply_of_the_last_state():
    backend = FakeBackend()
    director = await _started(NO_CHECKERS, backend)

    for weight in (5, 6, 7):
        director._emit(
            [
                health.PoolChanged(
                    virtual_server="TCP 10.0.0.1:80",
                    pool=health.Pool(
                        real_servers=(health.RealServer.at(endpoint("127.0.0.3", 80), weight),)
                    ),
                )
            ]
        )
    await _until(lambda: len(backend.applied) >= 2)
    for _ in range(20):
        await asyncio.sleep(0)  # any further apply would have run by now
    await director.stop()

    assert len(backend.applied) == 2
    ((last,),) = backend.applied[1:]
    assert last.real_servers == (lb.RealServer(address="127.0.0.3", port=80, weight=7),)


async def test_a_failed_apply_is_counted_and_the_next_change_tries_again():
    class FlakyBackend(FakeBackend):
        fail = True

        async def apply(self, desired: Sequence[lb.VirtualServer]) -> None:
            if self.fail:
                self.fail = False
                raise RuntimeError("nft said no")
            await super().apply(desired)

    backend = FlakyBackend()
    director = make_director(NO_CHECKERS, backend)
    await director.start()
    await _until(lambda: director.apply_errors == 1)
    assert director.applied is None
    director._emit(
        [health.PoolChanged(virtual_server="TCP 10.0.0.1:80", pool=health.Pool())]
    )  # next change
    await _until(lambda: backend.applied)
    await director.stop()
    assert director.applied == backend.applied[0]


def test_lvs_backend_nftables_builds_the_nftables_backend():
    config = parsed("global_defs {\n    lvs_backend nftables\n}\n" + NO_CHECKERS)
    assert director_module.default_backend(config).name == "nftables"


def test_dr_ingress_device_is_the_interface_of_the_vrrp_instance_owning_the_vip():
    config = parsed(
        """
vrrp_instance VI_1 {
    interface fe0
    virtual_router_id 61
    priority 100
    virtual_ipaddress {
        10.0.0.1/16
        10.9.0.1/24 dev srv0
    }
}
"""
        + NO_CHECKERS
    )
    assert director_module.ingress_devices(config) == {"10.0.0.1": "fe0", "10.9.0.1": "srv0"}


def test_mh_port_and_sh_fallback_become_scheduler_flags() -> None:
    text = (
        "virtual_server 10.0.0.1 80 {\n lb_algo mh\n mh-port\n mh-fallback\n lb_kind DR\n"
        " real_server 10.0.0.2 80 { weight 1 }\n}\n"
        "virtual_server 10.0.0.1 81 {\n lb_algo sh\n lb_kind DR\n"
        " real_server 10.0.0.2 81 { weight 1 }\n}\n"
    )
    config = parse_text(text).config
    assert config is not None
    flagged, plain = (virtual_service(config, vs) for vs in config.virtual_servers)
    assert flagged.scheduler_flags == {lb.SchedulerFlag.PORT, lb.SchedulerFlag.FALLBACK}
    assert plain.scheduler_flags == frozenset()


def _checked(servers: Sequence[str]) -> str:
    blocks = "".join(
        f"    real_server {address} 80 {{\n        TCP_CHECK {{\n            retry 0\n"
        "        }\n    }\n"
        for address in servers
    )
    head = "virtual_server 10.0.0.1 80 {\n    delay_loop 600\n    lb_algo rr\n    lb_kind DR\n"
    return f"{head}{blocks}}}\n"


async def test_a_reload_hands_the_data_plane_and_unchanged_servers_health_over():
    backend = FakeBackend()
    director = await _started(_checked(["127.0.0.2", "127.0.0.3"]), backend)
    key = "TCP 10.0.0.1:80"
    loop = asyncio.get_running_loop()
    # Every first check, now (the warm-up draw is up to 600 s away): .3 fails, .2 passes.
    for order in director.monitor.handle_timer(loop.time() + 600):
        assert isinstance(order, health.RunCheck)
        failed = order.checker.server.address == "127.0.0.3"
        event: health.HealthEvent = (
            health.CheckFailed(checker=order.checker, reason="refused")
            if failed
            else health.CheckSucceeded(checker=order.checker)
        )
        director._emit(director.monitor.handle(event, loop.time()))
    await _until(lambda: len(backend.applied) >= 2)
    assert not director.monitor.server_is_up(key, endpoint("127.0.0.3", 80))

    successor = await director.hand_over(parsed(_checked(["127.0.0.2", "127.0.0.3", "127.0.0.4"])))
    await _until(lambda: len(backend.applied) >= 3)

    assert backend.cleared == 0  # the kernel kept forwarding throughout
    assert not successor.monitor.server_is_up(key, endpoint("127.0.0.3", 80))  # still down
    assert successor.monitor.server_is_up(key, endpoint("127.0.0.4", 80))  # new: up
    ((last,),) = backend.applied[-1:]
    assert {rs.address for rs in last.real_servers} == {"127.0.0.2", "127.0.0.4"}
    await successor.stop()
    assert backend.cleared == 1


SYNCED = """
global_defs {
    lvs_sync_daemon srv0 VI_LB id 4
}
vrrp_instance VI_LB {
    interface fe0
    virtual_router_id 61
    priority 100
    virtual_ipaddress {
        10.0.0.1
    }
}
"""


class RecordingSync:
    """Stands in for io.lvs_sync.SyncDaemons: records the states it is told to follow."""

    made: list[RecordingSync] = []

    def __init__(self, settings: model.LvsSyncDaemon) -> None:
        self.settings = settings
        self.followed: list[str] = []
        self.stopped = False
        RecordingSync.made.append(self)

    async def follow(self, state: str) -> None:
        self.followed.append(state)

    async def stop(self) -> None:
        self.stopped = True


class IpvsFake(FakeBackend):
    name = "ipvs"


async def test_sync_daemon_follows_its_vrrp_instance_on_ipvs(monkeypatch):
    monkeypatch.setattr(lvs_sync, "SyncDaemons", RecordingSync)
    RecordingSync.made.clear()
    director = Director(parsed(SYNCED + NO_CHECKERS), runner=ScriptRunner(), backend=IpvsFake())
    await director.start()
    await director.vrrp_state("VI_OTHER", "MASTER")  # not the instance it follows
    await director.vrrp_state("VI_LB", "MASTER")
    await director.vrrp_state("VI_LB", "BACKUP")
    await director.stop()
    await director.vrrp_state("VI_LB", "MASTER")  # after stop: nothing
    [sync] = RecordingSync.made
    assert sync.settings.sync_id == 4
    assert sync.followed == ["BACKUP", "MASTER", "BACKUP"]
    assert sync.stopped


async def test_sync_daemon_is_ignored_with_a_warning_on_nftables(monkeypatch, caplog):
    monkeypatch.setattr(lvs_sync, "SyncDaemons", RecordingSync)
    RecordingSync.made.clear()
    director = Director(parsed(SYNCED + NO_CHECKERS), runner=ScriptRunner(), backend=FakeBackend())
    await director.start()
    await director.stop()
    assert RecordingSync.made == []
    assert "lvs_sync_daemon: ignored, it needs the IPVS data plane" in caplog.text


async def test_stop_ends_the_apply_loop_even_when_an_apply_swallows_the_cancellation():
    # What asyncio.wait_for can do in CPython 3.11 when the awaited tool finishes as the cancel
    # arrives: the apply returns normally and the loop goes back to waiting for a change.
    class SwallowingBackend(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.in_apply = asyncio.Event()
            self.release = asyncio.Event()

        async def apply(self, desired: Sequence[lb.VirtualServer]) -> None:
            self.applied.append(tuple(desired))
            if len(self.applied) == 2:
                self.in_apply.set()
                with contextlib.suppress(asyncio.CancelledError):  # swallowed: "completed"
                    await self.release.wait()

    backend = SwallowingBackend()
    director = await _started(NO_CHECKERS, backend)
    pool = health.Pool(real_servers=(health.RealServer.at(endpoint("127.0.0.3", 80), 4),))
    director._emit([health.PoolChanged(virtual_server="TCP 10.0.0.1:80", pool=pool)])
    await asyncio.wait_for(backend.in_apply.wait(), 5)

    await asyncio.wait_for(director.stop(), 5)  # TimeoutError here: the loop waited on
    assert backend.cleared == 1
