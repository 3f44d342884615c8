"""The sd_notify sender and the loop-fed watchdog, against a fake $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipkeeper.service import Notifier, notify_address, status_line, watchdog_interval


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's notify socket: (its path, the socket)."""
    path = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    yield path, receiver
    receiver.close()


def received(receiver: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_notify_address_accepts_paths_and_abstract_names_only() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@vk/notify") == b"\0vk/notify"
    assert notify_address("") is None
    assert notify_address("@") is None
    assert notify_address("relative/path") is None


def test_watchdog_interval_is_half_the_timeout_for_this_process_only() -> None:
    assert watchdog_interval("4000000", None, 42) == 2.0
    assert watchdog_interval("4000000", "42", 42) == 2.0
    assert watchdog_interval("4000000", "43", 42) is None  # systemd watches another process
    assert watchdog_interval(None, None, 42) is None
    assert watchdog_interval("0", None, 42) is None
    assert watchdog_interval("soon", None, 42) is None


def test_status_line_counts_states() -> None:
    assert status_line(["MASTER", "BACKUP"]) == "2 instances: 1 BACKUP, 1 MASTER"
    assert status_line(["MASTER"]) == "1 instance: 1 MASTER"
    assert status_line([]) == "0 instances"


def test_environment_is_read_once_and_removed() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(env)
    try:
        assert notifier.address == b"\0x"
        assert notifier.watchdog_interval == 0.5
        assert env == {}  # children (notify scripts, checkers) never see them
    finally:
        notifier.close()


def test_without_a_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False


def test_life_cycle_messages(manager: tuple[str, socket.socket]) -> None:
    path, receiver = manager
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    try:
        notifier.ready("1 instance: 1 MASTER")
        notifier.status("1 instance: 1 MASTER")  # unchanged: not sent again
        notifier.status("1 instance: 1 BACKUP")
        notifier.reloading()
        notifier.reloaded("1 instance: 1 BACKUP")
        notifier.stopping()
        messages = received(receiver)
    finally:
        notifier.close()
    assert messages[0] == "READY=1\nSTATUS=1 instance: 1 MASTER"
    assert messages[1] == "STATUS=1 instance: 1 BACKUP"
    reloading = messages[2].split("\n")
    assert reloading[0] == "RELOADING=1"
    assert reloading[1].startswith("MONOTONIC_USEC=") and reloading[1][15:].isdigit()
    assert messages[3] == "READY=1\nSTATUS=1 instance: 1 BACKUP"
    assert messages[4] == "STOPPING=1\nSTATUS=stopping"
    assert len(messages) == 5


def test_abstract_socket_is_reached() -> None:
    name = f"vipkeeper-test-{secrets.token_hex(4)}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name.encode())
    receiver.setblocking(False)
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.send("READY=1")
        assert received(receiver) == ["READY=1"]
    finally:
        notifier.close()
        receiver.close()


def test_a_failing_send_is_reported_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    try:
        assert notifier.send("READY=1") is False
        assert notifier.send("READY=1") is False
    finally:
        notifier.close()
    assert len([r for r in caplog.records if "service manager" in r.message]) == 1


class RecordingLoop:
    """Enough of an event loop to see what the watchdog schedules."""

    def __init__(self) -> None:
        self.scheduled: list[float] = []
        self.callbacks: list[tuple[object, tuple[object, ...]]] = []

    def call_later(self, delay: float, callback: object, *args: object) -> RecordedHandle:
        self.scheduled.append(delay)
        self.callbacks.append((callback, args))
        return RecordedHandle()


class RecordedHandle:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_watchdog_beats_at_half_the_timeout(manager: tuple[str, socket.socket]) -> None:
    path, receiver = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"}
    notifier = Notifier.from_environment(env)
    loop = RecordingLoop()
    try:
        notifier.start_watchdog(loop)  # type: ignore[arg-type]
        callback, args = loop.callbacks[-1]
        callback(*args)  # type: ignore[operator]
    finally:
        notifier.close()
    assert received(receiver) == ["WATCHDOG=1", "WATCHDOG=1"]
    assert loop.scheduled == [1.5, 1.5]


def test_no_watchdog_without_watchdog_usec(manager: tuple[str, socket.socket]) -> None:
    path, receiver = manager
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    loop = RecordingLoop()
    try:
        notifier.start_watchdog(loop)  # type: ignore[arg-type]
    finally:
        notifier.close()
    assert loop.scheduled == []
    assert received(receiver) == []


async def test_a_blocked_loop_stops_feeding_the_watchdog(
    manager: tuple[str, socket.socket],
) -> None:
    """The beat is the loop's own callback: while the loop is stuck, nothing is sent, and the
    beat comes back when the loop runs again."""
    path, receiver = manager
    interval = 0.02
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(int(interval * 2 * 1_000_000))}
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_interval == interval
    loop = asyncio.get_running_loop()
    try:
        notifier.start_watchdog(loop)
        beats: list[str] = []
        while len(beats) < 2:  # the loop is feeding it
            await asyncio.sleep(interval)
            beats += received(receiver)
        received(receiver)
        # Block the loop for many intervals; read the socket before the loop runs again.
        time.sleep(interval * 10)
        during_block = received(receiver)
        for _ in range(200):
            await asyncio.sleep(interval)
            after_block = received(receiver)
            if after_block:
                break
    finally:
        notifier.close()
    assert during_block == [], "a watchdog beat was sent while the event loop was blocked"
    assert after_block and set(after_block) == {"WATCHDOG=1"}
