"""The chaos soak's judgement of the client's probes: which ping gaps and failed HTTP requests a
round's fault explains, and which are violations."""

from vipkeeper.testing.chaos.lan import HTTP_TIMEOUT
from vipkeeper.testing.chaos.soak import (
    PING_GAP,
    SLACK,
    Window,
    failed_requests,
    ping_outages,
)

WINDOW = Window(start=100.0, end=103.75)  # a fault at 100 s, converged and settled by 103.75 s


def request(start: float, *, ok: bool = False, error: str = "TimeoutError") -> list[object]:
    end = start + (0.001 if ok else HTTP_TIMEOUT)
    return [start, end, ok, "r2" if ok else "", "" if ok else error]


def test_a_request_the_fault_could_have_cut_is_excused_whenever_it_began() -> None:
    # Begun before the fault, or before the window's end and failing after it.
    rows = [request(WINDOW.start - HTTP_TIMEOUT / 2), request(WINDOW.end + SLACK / 2)]
    failed, stray = failed_requests(rows, [WINDOW])
    assert len(failed) == 2
    assert stray == []


def test_a_request_under_way_in_no_window_is_a_violation_with_its_error() -> None:
    rows = [
        request(WINDOW.start - HTTP_TIMEOUT - 1.0),  # over before the fault
        request(WINDOW.end + SLACK + 0.01, error="ConnectionRefusedError"),  # after the window
        request(WINDOW.end + 5.0, ok=True),
    ]
    failed, stray = failed_requests(rows, [WINDOW])
    assert len(failed) == 2
    assert [error for _, _, error in stray] == ["TimeoutError", "ConnectionRefusedError"]


def test_ping_gaps_count_only_past_ping_gap_and_only_outside_a_window_are_violations() -> None:
    # A 1.05 s and a 1.4 s gap in the window (the first begun just before the fault), then a
    # reply after a gap shorter than PING_GAP, then a 3 s gap reaching past the window's end.
    replies = [99.5, 99.55, 100.6, 102.0, 102.05, 102.05 + PING_GAP / 2, 105.05 + PING_GAP / 2]
    gaps, stray = ping_outages(replies, [WINDOW])
    assert gaps == [(99.55, 100.6), (100.6, 102.0), (102.05 + PING_GAP / 2, 105.05 + PING_GAP / 2)]
    assert stray == gaps[2:]


def test_without_windows_every_failure_is_a_violation() -> None:
    failed, stray = failed_requests([request(50.0)], [])
    assert failed == stray != []
