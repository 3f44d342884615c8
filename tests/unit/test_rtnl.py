"""rtnetlink's messages as `vipkeeper.io.rtnl` reads and writes them, without a kernel.

The netns tests (tests/netns/test_io_addresses.py, test_io_links.py) check the same code against
the kernel, and the address encoding against pyroute2's.
"""

from __future__ import annotations

import errno
import socket
import struct

from vipkeeper.io import rtnl

NLMSG_ERROR, RTM_NEWADDR = 2, 20


def answer(sequence: int, error: int, kind: int = NLMSG_ERROR) -> bytes:
    # nlmsghdr, then the error code and the header of the request it answers
    body = struct.pack("=i", -error) + struct.pack("=IHHII", 40, RTM_NEWADDR, 5, sequence, 0)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, sequence, 1234) + body


def test_success_and_errors_are_read_from_the_answer_to_this_request() -> None:
    assert rtnl.acknowledgement(answer(7, 0), 7) == 0
    assert rtnl.acknowledgement(answer(7, errno.EEXIST), 7) == errno.EEXIST
    assert rtnl.acknowledgement(answer(7, errno.ENODEV), 7) == errno.ENODEV


def test_an_answer_to_another_request_is_not_this_one() -> None:
    assert rtnl.acknowledgement(answer(6, errno.EEXIST), 7) is None


def test_the_answer_is_found_after_other_messages_in_one_read() -> None:
    assert rtnl.acknowledgement(answer(6, 0) + answer(7, errno.EPERM), 7) == errno.EPERM


def test_truncated_or_malformed_input_is_no_answer() -> None:
    whole = answer(7, 0)
    assert rtnl.acknowledgement(whole[:19], 7) is None
    assert rtnl.acknowledgement(b"", 7) is None
    assert (
        rtnl.acknowledgement(struct.pack("=IHHII", 4, NLMSG_ERROR, 0, 7, 0) + bytes(8), 7) is None
    )


def test_an_address_message_reads_back_what_was_encoded() -> None:
    body = rtnl.address_body(
        family=socket.AF_INET, index=3, prefixlen=24, scope=253,
        address="10.0.0.100", label="eth0:vip", local=True, extended_flags=0x100,
    )  # fmt: skip
    data = rtnl.encode(rtnl.RTM_NEWADDR, 0, 9, body)
    (message,) = rtnl.messages(data)
    assert (message.kind, message.sequence) == (rtnl.RTM_NEWADDR, 9)
    address = rtnl.Address(message.body)
    assert (address.family, address.index, address.prefixlen, address.scope) == (2, 3, 24, 253)
    assert address.address() == "10.0.0.100"
    assert address.address(rtnl.IFA_LOCAL) == "10.0.0.100"
    assert address.label == "eth0:vip"
    assert address.all_flags == 0x100


def test_attributes_are_padded_to_four_bytes() -> None:
    # "eth0:vip\0" is 9 bytes: 4 of header, 9, then 3 of padding
    encoded = rtnl.attribute(rtnl.IFA_LABEL, b"eth0:vip\0")
    assert len(encoded) == 16
    assert struct.unpack_from("=HH", encoded) == (13, rtnl.IFA_LABEL)
    assert rtnl.attributes(encoded + rtnl.attribute(rtnl.IFA_FLAGS, bytes(4)), 0) == {
        rtnl.IFA_LABEL: b"eth0:vip\0",
        rtnl.IFA_FLAGS: bytes(4),
    }


def test_an_ipv6_address_and_a_link_read_back() -> None:
    body = rtnl.address_body(family=socket.AF_INET6, index=2, prefixlen=64, address="2001:db8::1")
    assert rtnl.Address(body).address() == "2001:db8::1"
    assert rtnl.Address(body).label is None
    link = rtnl.Link(rtnl.link_body("eth0"))
    assert (link.name, link.index, link.flags) == ("eth0", 0, 0)


def test_a_datagram_holds_several_messages_and_a_truncated_tail_ends_it() -> None:
    first = rtnl.encode(rtnl.RTM_NEWLINK, rtnl.NLM_F_MULTI, 4, rtnl.link_body("a"))
    second = rtnl.encode(rtnl.NLMSG_DONE, rtnl.NLM_F_MULTI, 4, struct.pack("=i", 0))
    assert [m.kind for m in rtnl.messages(first + second)] == [rtnl.RTM_NEWLINK, rtnl.NLMSG_DONE]
    assert [m.kind for m in rtnl.messages(first + second[:-2])] == [rtnl.RTM_NEWLINK]
    (done,) = rtnl.messages(second)
    assert rtnl.error_code(done) == 0
