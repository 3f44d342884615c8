"""The harness's topology comes from compose.yaml and the keepalived.conf each director mounts:
the repository's lab reads as two directors, two real servers and a client, and a compose file
with a third director (generated here, never started) needs no harness change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from harness.topology import COMPOSE_FILE, TopologyError, load

LAB = Path(COMPOSE_FILE).parent / "lab"


def test_the_repository_lab_reads_from_compose_and_keepalived_conf() -> None:
    topo = load(env={})
    assert topo.project == "vipkeeper-lab"
    assert topo.director_names == ("dir1", "dir2")
    assert topo.real_server_names == ("rs1", "rs2")
    assert topo.client.name == "client"
    assert (topo.front_net, topo.servers_net) == ("frontend", "servers")
    assert (topo.vip, topo.vip_port) == ("172.16.9.1", 80)
    assert topo.preferred_master.name == "dir1"
    assert [d.priority for d in topo.directors] == [150, 100]
    assert topo.director("dir2").advert_int == 1.0
    assert topo.director("dir1").config_env == "LAB_DIR1_CONF"
    assert topo.director("dir1").config_path == LAB / "dir1" / "keepalived.conf"
    assert topo.front_if("dir1") == "eth0" and topo.servers_if("dir1") == "eth1"
    assert topo.server_of_address("192.168.0.55") == "rs2"
    assert topo.health.down_bound() == 2 + 2 * 1 + 1 * 1
    assert topo.health.up_bound() == 3
    # A relative bind-mount source keeps its "./": without it Compose reads a named volume.
    assert topo.director("dir1").variant_config("nopreempt") == (
        "./lab/dir1/keepalived.nopreempt.conf"
    )
    assert topo.services == ("dir1", "dir2", "rs1", "rs2", "client", "prometheus")
    assert topo.prometheus_url == "http://172.16.0.90:9090"


def test_the_environment_picks_another_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "dir2.conf"
    conf.write_text(
        (LAB / "dir2" / "keepalived.conf").read_text().replace("priority 100", "priority 200")
    )
    topo = load(env={"LAB_DIR2_CONF": str(conf)})
    assert topo.director("dir2").priority == 200
    assert topo.preferred_master.name == "dir2"
    # RFC 3768 §6.1, v2 at advert_int 1: 3 x 1 s + (256 - 200) / 256 s
    assert topo.director("dir2").master_down_interval == 3 + 56 / 256


def _third_director(tmp_path: Path) -> Path:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    dir3 = dict(doc["services"]["dir2"])
    conf = tmp_path / "dir3.conf"
    conf.write_text(
        (LAB / "dir2" / "keepalived.conf").read_text().replace("priority 100", "priority 120")
    )
    dir3["volumes"] = [f"${{LAB_DIR3_CONF:-{conf}}}:/etc/keepalived/keepalived.conf:ro"]
    dir3["networks"] = {
        "frontend": {"ipv4_address": "172.16.0.58", "priority": 1000},
        "servers": {"ipv4_address": "192.168.0.58", "priority": 100},
    }
    dir3["hostname"] = "dir3"
    doc["services"]["dir3"] = dir3
    # A role named by label rather than by image.
    doc["services"]["rs2"]["image"] = "example/apache:1"
    doc["services"]["rs2"]["labels"] = {"vipkeeper.role": "realserver"}
    for name in ("dir1", "dir2"):  # relative paths resolve against the compose file's folder
        doc["services"][name]["volumes"][0] = doc["services"][name]["volumes"][0].replace(
            "./lab/", f"{LAB}/"
        )
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_third_director_needs_no_harness_change(tmp_path: Path) -> None:
    topo = load(_third_director(tmp_path), env={})
    assert topo.director_names == ("dir1", "dir2", "dir3")
    assert topo.director("dir3").priority == 120
    assert topo.director("dir3").addresses == {
        "frontend": "172.16.0.58",
        "servers": "192.168.0.58",
    }
    assert topo.others("dir1") == ("dir2", "dir3")
    assert topo.preferred_master.name == "dir1"
    assert topo.real_server_names == ("rs1", "rs2")


def test_a_director_without_a_usable_configuration_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("vrrp_instance VI_1 {\n    priority nonsense\n}\n")
    with pytest.raises(TopologyError, match="dir1"):
        load(env={"LAB_DIR1_CONF": str(bad)})
