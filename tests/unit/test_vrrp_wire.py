"""The VRRP codec against scapy's packets, round trips, and fuzzing of the decoder."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.vrrp import VRRP, VRRPv3

from vipkeeper.core.vrrp_numbers import MULTICAST_V4, MULTICAST_V6
from vipkeeper.core.vrrp_wire import (
    Advertisement,
    AuthType,
    WireError,
    decode,
    encode,
    internet_checksum,
    pack_password,
)

SRC4 = "192.168.0.53"
SRC6 = "fe80::1"


def scapy_v2(**fields: object) -> bytes:
    return bytes(VRRP(**fields))


def scapy_v3_ipv4(src: str, dst: str, **fields: object) -> bytes:
    packet = IP(src=src, dst=dst, ttl=255) / VRRPv3(**fields)
    return bytes(packet)[20:]  # strip the 20-byte IPv4 header, as the kernel does


def scapy_v3_ipv6(src: str, dst: str, **fields: object) -> bytes:
    packet = IPv6(src=src, dst=dst, hlim=255) / VRRPv3(**fields)
    return bytes(packet)[40:]


def test_v2_without_authentication_matches_scapy_byte_for_byte():
    ours = encode(
        Advertisement(version=2, vrid=51, priority=100, addresses=("172.16.9.1",), wire_interval=1)
    )
    theirs = scapy_v2(vrid=51, priority=100, addrlist=["172.16.9.1"], adv=1, authtype=0)
    assert ours == theirs


def test_v2_simple_password_matches_scapy_byte_for_byte():
    password = pack_password("s3cret")
    ours = encode(
        Advertisement(
            version=2,
            vrid=7,
            priority=254,
            addresses=("10.0.0.1", "10.0.0.2"),
            wire_interval=3,
            auth_type=AuthType.PASS,
            auth_data=password,
        )
    )
    theirs = scapy_v2(
        vrid=7,
        priority=254,
        addrlist=["10.0.0.1", "10.0.0.2"],
        adv=3,
        authtype=1,
        auth1=int.from_bytes(password[:4], "big"),
        auth2=int.from_bytes(password[4:], "big"),
    )
    assert ours == theirs


def test_v3_ipv4_matches_scapy_including_pseudo_header_checksum():
    advert = Advertisement(
        version=3, vrid=51, priority=150, addresses=("172.16.9.1",), wire_interval=100
    )
    ours = encode(advert, source=SRC4, destination=MULTICAST_V4)
    theirs = scapy_v3_ipv4(
        SRC4, MULTICAST_V4, vrid=51, priority=150, adv=100, addrlist=["172.16.9.1"]
    )
    assert ours == theirs


def test_v3_ipv6_matches_scapy_including_pseudo_header_checksum():
    advert = Advertisement(
        version=3,
        vrid=9,
        priority=200,
        addresses=("2001:db8::1", "2001:db8::2"),
        wire_interval=50,
    )
    ours = encode(advert, source=SRC6, destination=MULTICAST_V6)
    theirs = scapy_v3_ipv6(
        SRC6, MULTICAST_V6, vrid=9, priority=200, adv=50, addrlist=["2001:db8::1", "2001:db8::2"]
    )
    assert ours == theirs


def test_v3_unicast_checksum_depends_on_destination():
    advert = Advertisement(
        version=3, vrid=1, priority=100, addresses=("10.1.1.1",), wire_interval=100
    )
    to_a = encode(advert, source=SRC4, destination="192.168.0.57")
    to_b = encode(advert, source=SRC4, destination="192.168.0.58")
    assert to_a != to_b
    assert to_a == scapy_v3_ipv4(
        SRC4, "192.168.0.57", vrid=1, priority=100, adv=100, addrlist=["10.1.1.1"]
    )


def test_decoder_reads_scapy_v2_packet():
    password = pack_password("pw")
    raw = scapy_v2(
        vrid=200,
        priority=1,
        addrlist=["1.2.3.4"],
        adv=5,
        authtype=1,
        auth1=int.from_bytes(password[:4], "big"),
        auth2=int.from_bytes(password[4:], "big"),
    )
    advert = decode(raw, source=SRC4, destination=MULTICAST_V4)
    assert (advert.version, advert.vrid, advert.priority) == (2, 200, 1)
    assert advert.addresses == ("1.2.3.4",)
    assert advert.wire_interval == 5
    assert advert.interval_seconds == 5.0
    assert advert.auth_type == AuthType.PASS
    assert advert.auth_data == password


def test_decoder_reads_scapy_v3_ipv4_and_ipv6_packets():
    v4 = decode(
        scapy_v3_ipv4(SRC4, MULTICAST_V4, vrid=3, priority=0, adv=4095, addrlist=["9.9.9.9"]),
        source=SRC4,
        destination=MULTICAST_V4,
    )
    assert (v4.version, v4.vrid, v4.priority, v4.wire_interval) == (3, 3, 0, 4095)
    assert v4.interval_seconds == pytest.approx(40.95)
    v6 = decode(
        scapy_v3_ipv6(SRC6, MULTICAST_V6, vrid=4, priority=99, adv=1, addrlist=["2001:db8::9"]),
        source=SRC6,
        destination=MULTICAST_V6,
    )
    assert (v6.version, v6.vrid, v6.priority, v6.wire_interval) == (3, 4, 99, 1)
    assert v6.addresses == ("2001:db8::9",)


def test_v3_reserved_bits_are_ignored_on_reception():
    raw = bytearray(
        scapy_v3_ipv4(
            SRC4, MULTICAST_V4, vrid=3, priority=10, res=0xF, adv=100, addrlist=["9.9.9.9"]
        )
    )
    advert = decode(bytes(raw), source=SRC4, destination=MULTICAST_V4)
    assert advert.wire_interval == 100


def test_internet_checksum_of_message_with_its_checksum_is_zero():
    raw = encode(
        Advertisement(version=2, vrid=1, priority=1, addresses=("1.1.1.1",), wire_interval=1)
    )
    assert internet_checksum(raw) == 0
    assert internet_checksum(b"\x00\x01\xf2") == (~(0x0001 + 0xF200) & 0xFFFF)


@pytest.mark.parametrize(
    ("payload", "source", "reason"),
    [
        (b"\x21\x01\x64", SRC4, "too_short"),
        (bytes([0x41]) + bytes(19), SRC4, "version"),
        (bytes([0x22]) + bytes(19), SRC4, "type"),
        (bytes([0x21, 1, 100, 2, 0, 1, 0, 0]) + bytes(8), SRC4, "too_short"),
        (bytes([0x21, 1, 100, 1, 0, 1, 0, 0]) + bytes(16), SRC4, "length"),
        (bytes([0x21, 1, 100, 1, 0, 1, 0, 0]) + bytes(12), SRC4, "checksum"),
        (bytes([0x21, 1, 100, 1, 0, 1, 0, 0]) + bytes(12), SRC6, "address"),
        (bytes(20), "not-an-address", "address"),
    ],
)
def test_decoder_rejects_malformed_messages_with_a_reason(payload, source, reason):
    destination = MULTICAST_V6 if source == SRC6 else MULTICAST_V4
    with pytest.raises(WireError) as caught:
        decode(payload, source=source, destination=destination)
    assert caught.value.reason == reason


def test_v3_checksum_fails_when_pseudo_header_differs():
    raw = encode(
        Advertisement(version=3, vrid=1, priority=1, addresses=("1.1.1.1",), wire_interval=100),
        source=SRC4,
        destination=MULTICAST_V4,
    )
    with pytest.raises(WireError) as caught:
        decode(raw, source="192.168.0.99", destination=MULTICAST_V4)
    assert caught.value.reason == "checksum"


def test_corrupted_byte_fails_the_checksum():
    raw = bytearray(
        encode(
            Advertisement(version=2, vrid=1, priority=100, addresses=("1.1.1.1",), wire_interval=1)
        )
    )
    raw[2] ^= 0x01  # priority 100 -> 101
    with pytest.raises(WireError) as caught:
        decode(bytes(raw), source=SRC4, destination=MULTICAST_V4)
    assert caught.value.reason == "checksum"


@pytest.mark.parametrize(
    "advert",
    [
        Advertisement(version=2, vrid=256, priority=1, addresses=("1.1.1.1",), wire_interval=1),
        Advertisement(version=2, vrid=1, priority=1, addresses=("::1",), wire_interval=1),
        Advertisement(version=2, vrid=1, priority=1, addresses=(), wire_interval=256),
        Advertisement(
            version=2, vrid=1, priority=1, addresses=(), wire_interval=1, auth_data=bytes(9)
        ),
        Advertisement(version=3, vrid=1, priority=1, addresses=("1.1.1.1",), wire_interval=4096),
        Advertisement(version=4, vrid=1, priority=1, addresses=("1.1.1.1",), wire_interval=1),
    ],
)
def test_encoder_refuses_fields_that_do_not_fit(advert):
    with pytest.raises(ValueError):
        encode(advert, source=SRC4, destination=MULTICAST_V4)


def test_v3_encoder_needs_addresses_for_the_checksum():
    with pytest.raises(ValueError):
        encode(
            Advertisement(version=3, vrid=1, priority=1, addresses=("1.1.1.1",), wire_interval=1)
        )


def test_password_is_truncated_to_eight_bytes_and_zero_padded():
    assert pack_password("abc") == b"abc\x00\x00\x00\x00\x00"
    assert pack_password("0123456789") == b"01234567"


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)


@st.composite
def adverts(draw: st.DrawFn) -> tuple[Advertisement, str, str]:
    version = draw(st.sampled_from([2, 3]))
    family = 4 if version == 2 else draw(st.sampled_from([4, 6]))
    addr = ipv4 if family == 4 else ipv6
    addresses = tuple(draw(st.lists(addr, max_size=8)))
    common = {
        "vrid": draw(st.integers(0, 255)),
        "priority": draw(st.integers(0, 255)),
        "addresses": addresses,
    }
    if version == 2:
        advert = Advertisement(
            version=2,
            wire_interval=draw(st.integers(0, 255)),
            auth_type=draw(st.integers(0, 255)),
            auth_data=draw(st.binary(min_size=8, max_size=8)),
            **common,  # type: ignore[arg-type]
        )
    else:
        advert = Advertisement(version=3, wire_interval=draw(st.integers(0, 4095)), **common)  # type: ignore[arg-type]
    return advert, draw(addr), draw(addr)


@given(adverts())
def test_encode_then_decode_returns_the_same_advertisement(case):
    advert, source, destination = case
    raw = encode(advert, source=source, destination=destination)
    back = decode(raw, source=source, destination=destination)
    assert back.version == advert.version
    assert (back.vrid, back.priority, back.wire_interval) == (
        advert.vrid,
        advert.priority,
        advert.wire_interval,
    )
    assert back.addresses == tuple(str(ipaddress.ip_address(a)) for a in advert.addresses)
    if advert.version == 2:
        assert (back.auth_type, back.auth_data) == (advert.auth_type, advert.auth_data)


@given(
    st.binary(max_size=300),
    st.one_of(ipv4, ipv6, st.text(max_size=10)),
    st.one_of(ipv4, ipv6, st.text(max_size=10)),
)
def test_decode_of_arbitrary_bytes_raises_only_wire_error(payload, source, destination):
    try:
        decode(payload, source=source, destination=destination)
    except WireError as error:
        assert error.reason


@given(adverts(), st.data())
def test_decode_of_mutated_valid_packets_raises_only_wire_error(case, data):
    advert, source, destination = case
    raw = bytearray(encode(advert, source=source, destination=destination))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode(bytes(raw[:cut]), source=source, destination=destination)
    except WireError as error:
        assert error.reason
