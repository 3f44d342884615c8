"""vipkeeper.io.scripts: exit codes, timeouts that kill the whole process group without blocking
the loop, the concurrency limit, argument handling, and the track-script poller."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from vipkeeper.io.scripts import (
    ScriptRunner,
    TrackScriptPoller,
    notify_arguments,
    split_command,
)

poll = retry(
    stop=stop_after_delay(10),
    wait=wait_fixed(0.05),
    retry=retry_if_exception_type(AssertionError),
    reraise=True,
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("code", [0, 1, 3])
async def test_exit_code_is_reported(code: int) -> None:
    result = await ScriptRunner().run(f"sh -c 'exit {code}'")

    assert result.exit_code == code
    assert result.ok is (code == 0)
    assert not result.timed_out


async def test_missing_command_is_a_failed_result_not_an_exception() -> None:
    result = await ScriptRunner().run("/nonexistent/vipkeeper-script arg")

    assert result.exit_code is None
    assert not result.ok
    assert result.error


async def test_empty_command_line_is_a_failed_result() -> None:
    result = await ScriptRunner().run("   ")

    assert not result.ok
    assert result.error == "empty command line"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The shell backgrounds a grandchild and waits: killing only the shell would leave it.
    command = ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"]

    result = await ScriptRunner().run(command, timeout=0.5)

    assert result.timed_out
    assert not result.ok
    assert result.exit_code is not None and result.exit_code < 0
    grandchild = int(pid_file.read_text())

    @poll
    def gone() -> None:
        assert not alive(grandchild)

    gone()


async def test_hanging_script_does_not_block_the_event_loop() -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    result = await ScriptRunner().run("sleep 300", timeout=0.5)
    stop.set()
    await task

    assert result.timed_out
    assert ticks > 1  # the loop kept running other work while the script hung


async def test_cancelling_the_caller_kills_the_script(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = ScriptRunner()
    task = asyncio.create_task(runner.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 300"]))

    @poll
    def started() -> None:
        assert pid_file.exists() and pid_file.read_text().strip()

    await asyncio.to_thread(started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(int(pid_file.read_text()))


async def test_no_more_than_max_concurrent_scripts_run_at_once(tmp_path: Path) -> None:
    # Each script records how many were running when it started, holding a slot briefly.
    marker_dir = tmp_path / "running"
    marker_dir.mkdir()
    script = (
        f"touch {marker_dir}/$$; ls {marker_dir} | wc -l >> {tmp_path}/seen; "
        f"sleep 0.2; rm {marker_dir}/$$"
    )
    runner = ScriptRunner(max_concurrent=2)

    results = await asyncio.gather(*(runner.run(["sh", "-c", script]) for _ in range(6)))

    assert all(r.ok for r in results)
    seen = [int(line) for line in (tmp_path / "seen").read_text().split()]
    assert len(seen) == 6
    assert max(seen) <= 2


async def test_arguments_are_split_like_a_shell_and_passed_verbatim() -> None:
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    command = f"{sys.executable} -c '{code}' \"two words\" plain"

    result = await ScriptRunner().run(
        command, args=notify_arguments(kind="INSTANCE", name="VI_1", state="MASTER", priority=100),
        capture_output=True,
    )  # fmt: skip

    assert result.ok
    assert result.output.decode().strip() == (
        '["two words", "plain", "INSTANCE", "VI_1", "MASTER", "100"]'
    )


def test_split_command_does_not_expand_anything() -> None:
    assert split_command("/bin/echo $HOME '*' a\\ b", ["x"]) == (
        "/bin/echo",
        "$HOME",
        "*",
        "a b",
        "x",
    )


def test_notify_arguments_reject_unknown_kind() -> None:
    with pytest.raises(ValueError, match="INSTANCE or GROUP"):
        notify_arguments(kind="SERVER", name="x", state="MASTER", priority=1)


async def test_track_script_poller_reports_each_result(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("0")
    results: list[tuple[str, bool]] = []
    poller = TrackScriptPoller(
        ScriptRunner(),
        name="chk",
        command=["sh", "-c", f'exit "$(cat {state})"'],
        interval=0.05,
        timeout=5,
        on_result=lambda name, ok: results.append((name, ok)),
    )
    poller.start()
    try:

        @poll
        def saw_success() -> None:
            assert ("chk", True) in results

        await asyncio.to_thread(saw_success)
        state.write_text("1")

        @poll
        def saw_failure() -> None:
            assert results[-1] == ("chk", False)

        await asyncio.to_thread(saw_failure)
    finally:
        await poller.stop()
    assert not poller.running


async def test_track_script_timeout_is_reported_as_failure() -> None:
    results: list[bool] = []
    poller = TrackScriptPoller(
        ScriptRunner(),
        name="slow",
        command="sleep 300",
        interval=0.05,
        timeout=0.2,
        on_result=lambda _name, ok: results.append(ok),
    )
    poller.start()
    try:

        @poll
        def failed() -> None:
            assert results[:1] == [False]

        await asyncio.to_thread(failed)
    finally:
        await poller.stop()


async def test_run_command_returns_stdout_and_feeds_stdin() -> None:
    from vipkeeper.io.scripts import run_command

    assert await run_command(["tr", "a-z", "A-Z"], "nft script\n") == "NFT SCRIPT\n"


async def test_run_command_raises_with_the_tools_stderr() -> None:
    from vipkeeper.io.scripts import CommandFailed, run_command

    with pytest.raises(CommandFailed, match="exited 3: bad ruleset"):
        await run_command(["sh", "-c", "echo bad ruleset >&2; exit 3"])


async def test_run_command_kills_a_hanging_tool_after_its_timeout() -> None:
    from vipkeeper.io.scripts import run_command

    with pytest.raises(TimeoutError):
        await run_command(["sleep", "30"], timeout=0.2)
