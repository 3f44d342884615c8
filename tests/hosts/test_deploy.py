"""The deployment of deploy/site.yml, in Molecule's order: converge, idempotence, verify; then
a configuration change (applied by reload, never a restart) and a template vipkeeper refuses
(the host keeps the old file and the daemon its configuration).  The tests share one
deployment and run in file order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.hosts.playbooks import PlaybookRun, run_playbook

from vipkeeper.cli import DEFAULT_CONFIG

# vipkeeper_config_file: the role's default is vipkeeper's own, which the unit's default file names
CONFIG = DEFAULT_CONFIG
SYSCTL_FILE = "/etc/sysctl.d/90-lvs-dr-realserver.conf"  # realserver_sysctl_file
VIP_UNIT = "lvs-dr-vip.service"  # realserver_vip_unit
# Only the directors' configuration task (and its handlers): what an operator runs to change it.
CONFIG_ONLY = ("--limit", "directors", "--tags", "vipkeeper_config")


def status(host: Any) -> dict[str, Any]:
    out = host.run_expect([0], "vipkeeper status --json")
    return dict(json.loads(out.stdout))


def main_pid(host: Any) -> int:
    out = host.run_expect([0], "systemctl show -P MainPID vipkeeper")
    return int(out.stdout.strip())


def states(groups: dict[str, list[str]], host: Callable[[str], Any]) -> dict[str, list[str]]:
    return {d: [i["state"] for i in status(host(d))["instances"]] for d in groups["directors"]}


def test_converge(converged: PlaybookRun, groups: dict[str, list[str]]) -> None:
    assert converged.returncode == 0, converged.output[-4000:]
    for name in groups["directors"] + groups["realservers"]:
        counts = converged.recap.get(name)
        assert counts is not None, f"{name} not in the recap:\n{converged.output[-2000:]}"
        assert counts["failed"] == 0 and counts["unreachable"] == 0, counts
        assert counts["changed"] > 0, f"{name}: nothing changed on a bare host"


def test_second_run_changes_nothing(converged: PlaybookRun) -> None:
    assert converged.returncode == 0
    again = run_playbook("site.yml")
    assert again.returncode == 0, again.output[-4000:]
    assert again.recap, again.output[-2000:]
    assert again.total("changed") == 0, "\n".join(again.changed_tasks())


def test_vipkeeper_runs_under_systemd_as_its_own_user(
    converged: PlaybookRun, groups: dict[str, list[str]], host: Callable[[str], Any]
) -> None:
    assert converged.returncode == 0
    for name in groups["directors"]:
        h = host(name)
        service = h.service("vipkeeper")
        assert service.is_running and service.is_enabled, name
        pid = main_pid(h)
        assert h.run_expect([0], f"ps -o user= -p {pid}").stdout.strip() == "vipkeeper"
        conf = h.file(CONFIG)
        assert (conf.user, conf.group, conf.mode) == ("root", "vipkeeper", 0o640)
        doc = status(h)
        assert doc["config"]["file"] == CONFIG
        assert doc["config"]["sha256"], doc["config"]
        assert h.file("/usr/local/bin/vipkeeper").linked_to == "/opt/vipkeeper/venv/bin/vipkeeper"
    found = states(groups, host)
    masters = [d for d, s in found.items() if "MASTER" in s]
    assert len(masters) == 1, found


def test_real_servers_serve_the_vip_with_arp_suppressed(
    converged: PlaybookRun, groups: dict[str, list[str]], host: Callable[[str], Any]
) -> None:
    assert converged.returncode == 0
    vip = status(host(groups["directors"][0]))["instances"][0]["vips"][0]["address"]
    for name in groups["realservers"]:
        h = host(name)
        assert h.service("apache2").is_running and h.service("apache2").is_enabled
        assert h.service(VIP_UNIT).is_enabled
        assert f" {vip}/32 " in h.run_expect([0], "ip -o -4 addr show dev lo").stdout
        assert h.file(SYSCTL_FILE).contains("^net.ipv4.conf.all.arp_ignore = 1$")
        assert h.sysctl("net.ipv4.conf.all.arp_ignore") == 1
        assert h.sysctl("net.ipv4.conf.all.arp_announce") == 2
    # Every real server answers through the VIP, over new connections from the client.
    (client,) = groups["clients"]
    script = (
        "import collections,json,urllib.request\n"
        "c=collections.Counter()\n"
        "for _ in range(20):\n"
        "    try:\n"
        f"        b=urllib.request.urlopen('http://{vip}/',timeout=2).read()\n"
        "        c[b.decode().split()[0]]+=1\n"
        "    except Exception:\n"
        "        c['']+=1\n"
        "print(json.dumps(c))\n"
    )
    out = host(client).run_expect([0], "python3 -c %s", script)
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(answers) == set(groups["realservers"]), answers


def test_a_changed_configuration_is_reloaded_not_restarted(
    converged: PlaybookRun, groups: dict[str, list[str]], host: Callable[[str], Any]
) -> None:
    assert converged.returncode == 0
    directors = groups["directors"]
    before = {d: (main_pid(host(d)), status(host(d))["config"]["sha256"]) for d in directors}
    try:
        changed = run_playbook("site.yml", *CONFIG_ONLY, "-e", "lab_delay_loop=3")
        assert changed.returncode == 0, changed.output[-4000:]
        assert "RUNNING HANDLER [director : Reload vipkeeper]" in changed.output
        assert "RUNNING HANDLER [director : Restart vipkeeper]" not in changed.output
        for d in directors:
            h = host(d)
            doc = status(h)
            assert main_pid(h) == before[d][0], f"{d}: vipkeeper was restarted"
            assert doc["config"]["sha256"] != before[d][1], f"{d}: the new file was not loaded"
            assert doc["last_reload"] is not None and doc["last_reload"]["errors"] == [], doc
            assert h.file(CONFIG).contains("delay_loop 3")
    finally:
        back = run_playbook("site.yml", *CONFIG_ONLY)
    assert back.returncode == 0, back.output[-4000:]
    for d in directors:
        assert status(host(d))["config"]["sha256"] == before[d][1]
        assert main_pid(host(d)) == before[d][0]


def test_a_template_vipkeeper_refuses_never_reaches_the_host(
    converged: PlaybookRun, groups: dict[str, list[str]], host: Callable[[str], Any]
) -> None:
    assert converged.returncode == 0
    directors = groups["directors"]
    before = {
        d: (main_pid(host(d)), host(d).file(CONFIG).sha256sum, status(host(d))["config"]["sha256"])
        for d in directors
    }
    # A delay_loop that is not a number: `vipkeeper check` (the template's validate) rejects it.
    bad = run_playbook("site.yml", *CONFIG_ONLY, "-e", "lab_delay_loop=soon")
    assert bad.returncode != 0, bad.output[-4000:]
    assert "failed to validate" in bad.output, bad.output[-4000:]
    assert "delay_loop" in bad.output, bad.output[-4000:]
    for d in directors:
        h = host(d)
        assert h.file(CONFIG).sha256sum == before[d][1], f"{d}: the refused file was put in place"
        assert h.service("vipkeeper").is_running
        assert main_pid(h) == before[d][0]
        assert status(h)["config"]["sha256"] == before[d][2]
