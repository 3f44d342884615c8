"""Bad VRRPv2 authentication on the wire: a daemon configured with `auth_type PASS` receives, from
another host on its LAN, adverts with an undefined Auth Type, with a defined type that is not its
own, and with its type and another password.  keepalived counts these three apart (invalid type,
type mismatch, authentication failure); so must `vipkeeper status --json` and /metrics under
keepalived-exporter's names.  None of them may move the daemon: they all claim priority 254 and
the daemon stays MASTER with no new transition.
"""

from __future__ import annotations

import json

import pytest

from vipkeeper import control
from vipkeeper.testing.daemons import Subnet, describe, instance_config, start_vipkeeper
from vipkeeper.testing.netns import Lab
from vipkeeper.testing.waits import poll

pytestmark = pytest.mark.netns

METRICS_PORT = 9651
ELECTION = 20.0  # the daemon's start on a loaded machine, then its Master_Down_Interval
PASSWORD = "s3cret"

# Sent from the intruder's namespace: `count` adverts of (auth type, password) each, from a raw
# socket with TTL 255 to VRRP's group, every other field valid.
SENDER = r"""
import json, socket, sys
from vipkeeper.core import vrrp_numbers, vrrp_wire
source, vrid, vip, plan = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, vrrp_numbers.VRRP_PROTOCOL)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, vrrp_numbers.VRRP_TTL)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
for auth_type, password, count in plan:
    advert = vrrp_wire.Advertisement(
        version=2, vrid=vrid, priority=254, addresses=(vip,), wire_interval=1,
        auth_type=auth_type, auth_data=password.encode(),
    )
    payload = vrrp_wire.encode(advert, source=source, destination=vrrp_numbers.MULTICAST_V4)
    for _ in range(count):
        sock.sendto(payload, (vrrp_numbers.MULTICAST_V4, 0))
"""

# error kind in the status document -> (auth type, password, adverts sent)
BAD = {
    "authentication_invalid": (9, PASSWORD, 1),
    "authentication_mismatch": (0, "", 2),
    "authentication_failure": (1, "guess", 3),
}
EXPORTED = {
    "authentication_invalid": "keepalived_authentication_invalid_total",
    "authentication_mismatch": "keepalived_authentication_mismatch_total",
    "authentication_failure": "keepalived_authentication_failure_total",
}


def test_bad_authentication_is_counted_by_kind_and_moves_nothing(lab: Lab) -> None:
    net = Subnet.next()
    router = lab.add_host("r1", [net.v4_cidr(1)])
    intruder = lab.add_host("intruder", [net.v4_cidr(9)])
    daemon = start_vipkeeper(
        lab,
        router,
        instance_config(priority=100, vips=[net.vip4_cidr], auth_pass=PASSWORD),
        extra_args=["--metrics-listen", f"127.0.0.1:{METRICS_PORT}"],
    )

    def instance() -> dict[str, object]:
        try:
            document = control.request(str(daemon.control_socket), "status", timeout=10)
        except control.ControlError as error:
            raise AssertionError(f"not serving yet: {error}") from error
        (found,) = document["instances"]
        return dict(found)

    def master() -> None:
        assert instance()["state"] == "MASTER"

    poll(ELECTION, master, [daemon])
    transitions = len(daemon.transitions())
    plan = [(auth_type, password, count) for auth_type, password, count in BAD.values()]
    lab.python(intruder, SENDER, net.v4(9), "51", net.vip4, json.dumps(plan))

    def counted() -> dict[str, object]:
        errors = instance()["errors"]
        assert isinstance(errors, dict)
        seen = {kind: errors[kind] for kind in BAD}
        assert seen == {kind: count for kind, (_, _, count) in BAD.items()}, seen
        return errors

    poll(10, counted, [daemon])
    now = instance()
    assert now["state"] == "MASTER", describe([daemon])
    assert now["adverts"]["received"] == 0  # type: ignore[index]
    assert now["master_address"] == net.v4(1)
    assert len(daemon.transitions()) == transitions, describe([daemon])

    from prometheus_client.parser import text_string_to_metric_families

    text = lab.run(router, "curl", "-sf", f"http://127.0.0.1:{METRICS_PORT}/metrics").stdout
    samples = {
        (sample.name, sample.labels.get("iname")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for kind, (_, _, count) in BAD.items():
        assert samples[(EXPORTED[kind], "VI_1")] == count, (kind, json.dumps(now))
