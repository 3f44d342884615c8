"""The live view driven headless: fake sources stand in for the lab, the view is rendered to a
string (rich's recording console), and the test reads what an attendee would see."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.probes import Request
from harness.watch import ArpView, DirectorView, RealServerView, Watch, render_text

RS = {"192.168.0.54": "rs1", "192.168.0.55": "rs2"}


@dataclass
class FakeDirectors:
    views: dict[str, DirectorView]

    def read(self, director: str) -> DirectorView:
        return self.views[director]


@dataclass
class FakeArp:
    view: ArpView

    def read(self) -> ArpView:
        return self.view


@dataclass
class FakeHttp:
    requests: list[Request] = field(default_factory=list)
    closed: bool = False

    def window(self, since: float) -> list[Request]:
        return [r for r in self.requests if r.start >= since]

    def close(self) -> None:
        self.closed = True


def request(at: float, server: str | None, seq: int) -> Request:
    return Request(
        kind="new",
        seq=seq,
        conn=seq,
        start=at,
        end=at + 0.002,
        status=200 if server else None,
        error=None if server else "timed out",
        server=server,
    )


def director(name: str, state: str | None, priority: int, vip: bool, **kw: object) -> DirectorView:
    return DirectorView(
        name=name,
        container=str(kw.get("container", "running")),
        state=state,
        priority=priority,
        holds_vip=vip,
        reason=str(kw["reason"]) if "reason" in kw else None,
        real_servers={"rs1": True, "rs2": True} if vip else {},
    )


def make_watch(now: list[float]) -> tuple[Watch, FakeDirectors, FakeArp, FakeHttp]:
    directors = FakeDirectors(
        {
            "dir1": director("dir1", "MASTER", 150, True, reason="priority higher than master"),
            "dir2": director("dir2", "BACKUP", 100, False, reason="startup"),
        }
    )
    arp = FakeArp(ArpView(mac="02:42:ac:10:00:35", node="dir1"))
    http = FakeHttp(
        [request(now[0] - 4 + i * 0.1, "rs1" if i % 4 else "rs2", i) for i in range(40)]
    )
    watch = Watch(
        vip="172.16.9.1",
        directors=("dir1", "dir2"),
        real_servers=("rs1", "rs2"),
        director_source=directors,
        arp_source=arp,
        http_source=http,
        clock=lambda: now[0],
    )
    return watch, directors, arp, http


def watched_once(now: list[float]) -> tuple[Watch, FakeDirectors, FakeArp, FakeHttp]:
    """`make_watch` after one poll and one snapshot, its clock half a second on."""
    made = make_watch(now)
    made[0].poll_once()
    made[0].snapshot()
    now[0] += 0.5
    return made


def test_the_view_shows_directors_client_http_and_real_servers() -> None:
    now = [1000.0]
    watch, *_ = make_watch(now)
    watch.poll_once()
    text = render_text(watch.snapshot(), list(watch.transitions))
    assert "VIP 172.16.9.1 held by: dir1" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert "MASTER" in lines["dir1"] and "150" in lines["dir1"] and "yes" in lines["dir1"]
    assert "BACKUP" in lines["dir2"] and "100" in lines["dir2"] and " no " in lines["dir2"]
    assert "02:42:ac:10:00:35 -> dir1" in text
    assert "8.0 req/s, 0 failed" in text  # 40 requests in the 5 s window
    assert "rs1 75%" in text and "rs2 25%" in text
    assert text.count("in the pool") == 2


def test_a_failover_shows_as_transitions_with_reasons() -> None:
    now = [1000.0]
    watch, directors, arp, http = watched_once(now)
    directors.views["dir1"] = DirectorView(name="dir1", container="exited", holds_vip=False)
    directors.views["dir2"] = director(
        "dir2", "MASTER", 100, True, reason="master down interval expired"
    )
    arp.view = ArpView(mac="02:42:ac:10:00:39", node="dir2")
    http.requests.append(request(now[0] - 0.2, None, 99))
    watch.poll_once()
    text = render_text(watch.snapshot(), list(watch.transitions))
    assert "VIP 172.16.9.1 held by: dir2" in text
    assert "dir1: MASTER -> exited" in text
    assert "dir2: BACKUP -> MASTER (master down interval expired)" in text
    assert "VIP: dir2" in text
    assert "client ARP: VIP -> 02:42:ac:10:00:39 (dir2)" in text
    assert "1 failed" in text


def test_split_brain_and_a_real_server_arp_entry_and_a_drain_are_called_out() -> None:
    now = [1000.0]
    watch, directors, arp, _ = watched_once(now)
    directors.views["dir2"] = director("dir2", "MASTER", 100, True)
    directors.views["dir1"] = DirectorView(
        name="dir1",
        container="running",
        state="MASTER",
        priority=150,
        holds_vip=True,
        real_servers={"rs1": False, "rs2": True},
    )
    arp.view = ArpView(mac="02:42:ac:10:00:36", node="rs1")
    watch.poll_once()
    text = render_text(watch.snapshot(), list(watch.transitions))
    assert "held by: dir1, dir2" in text and "SPLIT BRAIN" in text
    assert "02:42:ac:10:00:36 -> rs1" in text
    assert "FAILED, drained" in text
    assert "rs1: drained (check failed)" in text


def test_a_source_that_fails_is_shown_not_fatal() -> None:
    now = [1000.0]
    watch, *_ = make_watch(now)

    class Broken:
        def read(self, director: str) -> DirectorView:
            raise RuntimeError("container between states")

    watch.director_source = Broken()
    watch.poll_once()
    text = render_text(watch.snapshot(), list(watch.transitions))
    assert "unreadable: container between states" in text


@dataclass
class FakeRealServers:
    views: dict[str, RealServerView]

    def read(self, real_server: str) -> RealServerView:
        return self.views[real_server]


def test_httpd_arp_suppression_and_a_link_show_and_their_changes_are_transitions() -> None:
    now = [1000.0]
    watch, directors, *_ = make_watch(now)
    up = {"container": "running", "httpd": True, "arp_suppressed": True}
    servers = FakeRealServers({rs: RealServerView(name=rs, **up) for rs in ("rs1", "rs2")})  # type: ignore[arg-type]
    watch.real_server_source = servers
    directors.views["dir1"] = replace(directors.views["dir1"], link="up")
    watch.poll_once()
    text = render_text(watch.snapshot(), list(watch.transitions))
    assert text.count("running") >= 2 and text.count("suppressed") == 2
    now[0] += 0.5
    servers.views["rs1"] = RealServerView(
        name="rs1", container="running", httpd=False, arp_suppressed=False
    )
    directors.views["dir1"] = replace(directors.views["dir1"], link="down")
    watch.poll_once()
    snap = watch.snapshot()
    text = render_text(snap, list(watch.transitions))
    assert snap.real_server("rs1") == servers.views["rs1"]
    assert "STOPPED" in text and "ANSWERS (suppression off)" in text
    assert "rs1: httpd stopped" in text
    assert "rs1: ARP suppression OFF (answers ARP)" in text
    assert "dir1: front link down" in text
    assert "rs2: httpd" not in text  # nothing changed there
