"""A short fuzz run of every target in tests/fuzz/targets.py, from its real seeds and from
Hypothesis's bytes: each parser answers bad input with its own typed error (or diagnostics),
never anything else. `make fuzz` runs the same targets coverage-guided for longer; an input it
finds is replayed here as a regression.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzz import seeds, targets

QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def real_file_access() -> Iterator[None]:
    yield
    targets.restore_file_access()


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_seed_passes_its_target(name: str) -> None:
    found = seeds.seeds(name)
    if name == "config" and not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no configuration seeds under {seeds.samples_dir()}")
        pytest.skip(f"no configuration seeds under {seeds.samples_dir()}")
    assert found
    for seed in found:
        targets.TARGETS[name](seed)


def test_the_seeds_reach_past_the_vrrp_checksum() -> None:
    # A seed decodes as a valid advert: mutations start from inside the parser, not at its door.
    from vipkeeper.core import vrrp_wire

    decoded = 0
    for seed in seeds.seeds("vrrp"):
        source, destination = targets.V6 if seed[0] & 1 else targets.V4
        try:
            vrrp_wire.decode(seed[1:], source=source, destination=destination)
            decoded += 1
        except vrrp_wire.WireError:
            continue
    assert decoded >= 4


@QUICK
@given(st.binary(max_size=600))
def test_vrrp_decoder_raises_only_wire_errors(data: bytes) -> None:
    targets.vrrp(data)


@QUICK
@given(st.binary(max_size=3000))
def test_http_response_reader_raises_only_check_errors(data: bytes) -> None:
    targets.http(data)


@SLOW
@given(st.text(alphabet=st.sampled_from(list('{}"\\#!\n \tabcdeilnprstuv_0123456789./*')),
               max_size=400))  # fmt: skip
def test_configuration_text_never_raises(text: str) -> None:
    targets.config(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "include /dev/zero\n",
        "include conf.d/*.conf\ninclude loop.conf\n",
        "include " + "{a,b}" * 20 + "\n",
        "vrrp_instance X {\n" * 5000,
        "}" * 5000,
        '"' * 1000 + "\n",
    ],
)
def test_hostile_configuration_text_is_answered_with_diagnostics(text: str) -> None:
    targets.config(text.encode())
