"""VRRP advertisement codec: VRRPv2 (RFC 3768 §5) and VRRPv3 (RFC 9568 §5), bytes <-> dataclass.

Owns: the packet layout, the Internet checksum (plain for v2, with the IPv4/IPv6 pseudo-header
for v3), the simple-text password field of v2 and the address list of both versions.
Must never: touch a socket, read a clock, or judge whether an advertisement is acceptable for an
instance (VRID, priority, authentication value, interval): that is the state machine's job.
`decode` raises nothing but `WireError`, whatever the bytes; `encode` raises `ValueError` for
fields that cannot be represented.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from enum import IntEnum

from vipkeeper.core.records import record
from vipkeeper.core.timing import V3_MAX_CENTISECONDS, centiseconds_to_seconds
from vipkeeper.core.vrrp_numbers import VRRP_PROTOCOL

# RFC 3768 §7.3 / RFC 9568 §7.3: the virtual router MAC, 00-00-5E-00-01-{VRID} (IPv4)
VIRTUAL_MAC_PREFIX_V4 = "00:00:5e:00:01"
ADVERTISEMENT_TYPE = 1  # RFC 9568 §5.2.2: the only defined type

_HEADER_LEN = 8
_V2_AUTH_LEN = 8  # RFC 3768 §5.3.10: two 32-bit words of authentication data
MAX_ADDRESSES = 0xFF  # the Count IPvX Addr field is one byte, RFC 9568 §5.2.5
PASSWORD_LEN = _V2_AUTH_LEN


class AuthType(IntEnum):
    """RFC 3768 §5.3.6 (values from RFC 2338, which keepalived's auth_type PASS / AH keep)."""

    NONE = 0
    PASS = 1  # simple text password, 8 bytes, zero padded
    AH = 2  # IP Authentication Header (not implemented beyond recognising the value)


class WireError(ValueError):
    """A received VRRP message could not be decoded.

    `reason` is a short stable key suitable for a counter ("too_short", "checksum", ...).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@record
class Advertisement:
    """One VRRP ADVERTISEMENT as it appears on the wire.

    `wire_interval` is the raw wire value: whole seconds for version 2 (RFC 3768 §5.3.7),
    centiseconds (12 bits) for version 3 (RFC 9568 §5.2.7). `auth_type` and `auth_data` exist
    only in version 2; `auth_data` is the raw 8-byte field (shorter is zero padded on encode).
    `checksum` is the value read from the wire (0 when built locally and not yet encoded).
    """

    version: int
    vrid: int
    priority: int
    addresses: tuple[str, ...]
    wire_interval: int
    auth_type: int = AuthType.NONE
    auth_data: bytes = b""
    checksum: int = 0

    @property
    def interval_seconds(self) -> float:
        """The advertisement interval in seconds, whatever the version."""
        if self.version == 2:
            return float(self.wire_interval)
        return centiseconds_to_seconds(self.wire_interval)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum of 16-bit words, complemented (odd length zero padded)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pack_password(password: str) -> bytes:
    """Encode a v2 simple-text password: first 8 bytes, zero padded (RFC 2338 §5.3.10.1)."""
    raw = password.encode("utf-8")[:PASSWORD_LEN]
    return raw.ljust(PASSWORD_LEN, b"\x00")


# Every received packet names the same few addresses again and again: parsing them once keeps
# the per-packet cost of `ipaddress` out of the receive path (the caches are pure and bounded).
@functools.lru_cache(maxsize=4096)
def _parse_address(text: str) -> tuple[int, bytes]:
    """(IP version, packed bytes) of an address in text form; ValueError if it is none."""
    address = ipaddress.ip_address(text)
    return address.version, address.packed


@functools.lru_cache(maxsize=4096)
def _address_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _pseudo_header(source: str, destination: str, length: int) -> bytes:
    """The pseudo-header RFC 9568 §5.2.8 adds to the v3 checksum (RFC 8200 §8.1 for IPv6)."""
    src_version, src = _parse_address(source)
    dst_version, dst = _parse_address(destination)
    if src_version != dst_version:
        raise ValueError(f"source {source} and destination {destination} differ in family")
    if src_version == 4:
        return src + dst + struct.pack("!BBH", 0, VRRP_PROTOCOL, length)
    return src + dst + struct.pack("!I3xB", length, VRRP_PROTOCOL)


def _pack_addresses(addresses: tuple[str, ...], family: int) -> bytes:
    out = bytearray()
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address.version != family:
            raise ValueError(f"address {text} is not IPv{family}")
        out += address.packed
    return bytes(out)


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} {value} does not fit in one byte")


def encode(
    advert: Advertisement, *, source: str | None = None, destination: str | None = None
) -> bytes:
    """Build the VRRP message (no IP header) with its checksum filled in.

    Version 3 needs `source` and `destination` (the IP header's addresses) for the pseudo-header
    checksum and takes the address family from them; version 2 is IPv4 only and ignores them.
    """
    _check_byte("vrid", advert.vrid)
    _check_byte("priority", advert.priority)
    # RFC 9568 §5.2.5 sets the minimum count to 1, but keepalived (non-strict) sends 0 for an
    # instance without addresses; both directions accept 0 to interoperate.
    if len(advert.addresses) > MAX_ADDRESSES:
        raise ValueError(f"an advertisement carries at most {MAX_ADDRESSES} addresses")
    if advert.version not in (2, 3):
        raise ValueError(f"unsupported VRRP version {advert.version}")
    # Both versions open with Version/Type, VRID, Priority and the address count.
    opening = struct.pack(
        "!BBBB",
        (advert.version << 4) | ADVERTISEMENT_TYPE,
        advert.vrid,
        advert.priority,
        len(advert.addresses),
    )
    if advert.version == 2:
        # RFC 3768 §5.1: then Auth Type, Adver Int, Checksum, addresses, 8 bytes of
        # authentication data.
        _check_byte("auth_type", advert.auth_type)
        _check_byte("wire_interval", advert.wire_interval)
        if len(advert.auth_data) > _V2_AUTH_LEN:
            raise ValueError("v2 authentication data is at most 8 bytes")
        body = _pack_addresses(advert.addresses, 4) + advert.auth_data.ljust(_V2_AUTH_LEN, b"\x00")
        message = opening + struct.pack("!BBH", advert.auth_type, advert.wire_interval, 0) + body
        checksum = internet_checksum(message)  # RFC 3768 §5.3.8: over the VRRP message only
    else:
        if source is None or destination is None:
            raise ValueError("a v3 checksum needs the source and destination addresses")
        if not 0 <= advert.wire_interval <= V3_MAX_CENTISECONDS:
            raise ValueError(f"v3 interval {advert.wire_interval} cs does not fit in 12 bits")
        family = ipaddress.ip_address(source).version
        body = _pack_addresses(advert.addresses, family)
        # RFC 9568 §5.1: then the 12-bit Max Adver Int (4 reserved bits sent as zero), Checksum.
        interval = advert.wire_interval & V3_MAX_CENTISECONDS
        message = opening + struct.pack("!HH", interval, 0) + body
        # RFC 9568 §5.2.8: checksum includes the pseudo-header of the enclosing IP packet.
        checksum = internet_checksum(_pseudo_header(source, destination, len(message)) + message)
    return message[:6] + struct.pack("!H", checksum) + message[8:]


def _family_of(text: str, what: str) -> int:
    try:
        return _parse_address(text)[0]
    except ValueError:
        raise WireError("address", f"{what} {text!r} is not an IP address") from None


def decode(payload: bytes, *, source: str, destination: str) -> Advertisement:
    """Parse and verify one VRRP message (IP header already stripped).

    `source` / `destination` are the enclosing IP header's addresses: they give the address
    family and, for version 3, the pseudo-header checksum. Raises `WireError` on any problem.
    """
    family = _family_of(source, "source")
    if _family_of(destination, "destination") != family:
        raise WireError("address", "source and destination differ in address family")
    if len(payload) < _HEADER_LEN:
        raise WireError("too_short", f"{len(payload)} bytes, a VRRP header is 8")
    version_type, vrid, priority, count, word_hi, word_lo, checksum = struct.unpack(
        "!BBBBBBH", payload[:_HEADER_LEN]
    )
    version, packet_type = version_type >> 4, version_type & 0x0F
    if version not in (2, 3):
        raise WireError("version", f"unknown VRRP version {version}")
    if packet_type != ADVERTISEMENT_TYPE:
        raise WireError("type", f"unknown VRRP packet type {packet_type}")
    if version == 2 and family != 4:
        raise WireError("address", "VRRPv2 is defined for IPv4 only (RFC 3768)")
    address_len = 4 if family == 4 else 16
    expected = _HEADER_LEN + count * address_len + (_V2_AUTH_LEN if version == 2 else 0)
    if len(payload) < expected:
        raise WireError("too_short", f"{len(payload)} bytes, {count} addresses need {expected}")
    if len(payload) > expected:
        raise WireError("length", f"{len(payload)} bytes, {count} addresses need {expected}")
    if version == 2:
        valid = internet_checksum(payload) == 0  # RFC 3768 §7.1
    else:
        pseudo = _pseudo_header(source, destination, len(payload))
        valid = internet_checksum(pseudo + payload) == 0  # RFC 9568 §7.1
    if not valid:
        raise WireError("checksum", f"checksum 0x{checksum:04x} does not verify")
    raw = payload[_HEADER_LEN : _HEADER_LEN + count * address_len]
    addresses = tuple(
        _address_text(raw[i : i + address_len]) for i in range(0, len(raw), address_len)
    )
    if version == 2:
        return Advertisement(
            version=2,
            vrid=vrid,
            priority=priority,
            addresses=addresses,
            wire_interval=word_lo,
            auth_type=word_hi,
            auth_data=bytes(payload[expected - _V2_AUTH_LEN : expected]),
            checksum=checksum,
        )
    # RFC 9568 §5.2.6: the 4 reserved bits are ignored on reception.
    interval = ((word_hi << 8) | word_lo) & V3_MAX_CENTISECONDS
    return Advertisement(
        version=3,
        vrid=vrid,
        priority=priority,
        addresses=addresses,
        wire_interval=interval,
        auth_type=AuthType.NONE,
        auth_data=b"",
        checksum=checksum,
    )


def virtual_mac(vrid: int) -> str:
    """The IPv4 virtual router MAC address of `vrid` (RFC 3768 §7.3), as `ip link` writes it."""
    return f"{VIRTUAL_MAC_PREFIX_V4}:{vrid:02x}"
