"""Reading rtnetlink acknowledgements for the quick VIP add (`io.addresses._acknowledgement`)."""

from __future__ import annotations

import errno
import struct

from vipkeeper.io.addresses import _acknowledgement

NLMSG_ERROR, RTM_NEWADDR = 2, 20


def answer(sequence: int, error: int, kind: int = NLMSG_ERROR) -> bytes:
    # nlmsghdr, then the error code and the header of the request it answers
    body = struct.pack("=i", -error) + struct.pack("=IHHII", 40, RTM_NEWADDR, 5, sequence, 0)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, sequence, 1234) + body


def test_success_and_errors_are_read_from_the_answer_to_this_request():
    assert _acknowledgement(answer(7, 0), 7) == 0
    assert _acknowledgement(answer(7, errno.EEXIST), 7) == errno.EEXIST
    assert _acknowledgement(answer(7, errno.ENODEV), 7) == errno.ENODEV


def test_an_answer_to_another_request_is_not_this_one():
    assert _acknowledgement(answer(6, errno.EEXIST), 7) is None


def test_the_answer_is_found_after_other_messages_in_one_read():
    assert _acknowledgement(answer(6, 0) + answer(7, errno.EPERM), 7) == errno.EPERM


def test_truncated_or_malformed_input_is_no_answer():
    whole = answer(7, 0)
    assert _acknowledgement(whole[:19], 7) is None
    assert _acknowledgement(b"", 7) is None
    assert _acknowledgement(struct.pack("=IHHII", 4, NLMSG_ERROR, 0, 7, 0) + bytes(8), 7) is None
