"""The one subprocess runner of vipkeeper: notify scripts, track scripts, anything else.

Owns: starting a command line with asyncio (never a thread, never a blocking wait), its timeout
(the whole process group is killed, so a hanging shell pipeline dies with its children), and the
limit on how many scripts run at once. Also the periodic poller that runs one `vrrp_script` every
`interval` and reports each result.

Must never: decide anything from a result (rise/fall counting and state changes live in the pure
core), run a command through a shell implicitly (command lines are split with `shlex`, like
keepalived's own splitting of `script` lines), or raise because a script misbehaved: every outcome
is a `ScriptResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import shlex
import signal
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vipkeeper.core.records import record
from vipkeeper.io.cancel import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 8
_OUTPUT_LIMIT = 64 * 1024
# After the process group got SIGKILL, how long to wait for a pipe held open by a descendant
# that left the group (setsid) before giving up on its output.
_DRAIN_GRACE = 1.0


@record
class ScriptResult:
    """What happened to one run of a command.

    `exit_code` is the process's return code (negative: killed by that signal), None when the
    command could not be started (`error` says why). `timed_out` is True when vipkeeper killed it.
    `output` holds stdout and stderr interleaved (truncated to 64 KiB) when capture was asked for.
    """

    argv: tuple[str, ...]
    exit_code: int | None
    timed_out: bool = False
    error: str | None = None
    output: bytes = b""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def split_command(command: str | Sequence[str], args: Sequence[str] = ()) -> tuple[str, ...]:
    """The argv for a configured command line plus extra arguments.

    A string is split like a shell would split words (quotes, backslashes) without expanding
    anything; a sequence is taken as already split.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return (*argv, *(str(arg) for arg in args))


def notify_arguments(*, kind: str, name: str, state: str, priority: int) -> tuple[str, ...]:
    """The arguments keepalived appends to a generic `notify` script.

    `kind` is "INSTANCE" or "GROUP" (keepalived.conf(5), notify: `script GROUP|INSTANCE NAME
    STATE PRIORITY`).
    """
    if kind not in ("INSTANCE", "GROUP"):
        raise ValueError(f"kind must be INSTANCE or GROUP, not {kind!r}")
    return (kind, name, state, str(priority))


# keepalived.conf(5): without `script_user`, scripts run as this user if it exists, else root.
DEFAULT_SCRIPT_USER = "keepalived_script"


class ScriptSecurityDefs(Protocol):
    """What `script_security` reads (the configuration's global_defs)."""

    @property
    def enable_script_security(self) -> bool: ...
    @property
    def script_user(self) -> str | None: ...
    @property
    def script_group(self) -> str | None: ...


@dataclass(frozen=True)
class ScriptSecurity:
    """keepalived's `enable_script_security` and `script_user USER [GROUP]` (global_defs).

    `user` None: DEFAULT_SCRIPT_USER when that account exists and the daemon runs as root, else
    the daemon's own user.
    With `enabled`, a script that would run as root is refused when its file, or a directory on
    its path, can be changed by someone other than root (see `insecure_path`).
    """

    enabled: bool = False
    user: str | None = None
    group: str | None = None


def script_security(global_defs: ScriptSecurityDefs) -> ScriptSecurity:
    """The `ScriptSecurity` of a configuration's global_defs."""
    return ScriptSecurity(
        enabled=global_defs.enable_script_security,
        user=global_defs.script_user,
        group=global_defs.script_group,
    )


@dataclass(frozen=True)
class _Identity:
    """Who scripts run as: a user and group, or why they cannot run."""

    uid: int | None  # None: the daemon's own
    gid: int | None
    error: str | None = None


def _identity(security: ScriptSecurity) -> _Identity:
    name = security.user
    if name is None:
        if os.geteuid() != 0:
            return _Identity(None, None)  # only root can switch; scripts run as the daemon does
        try:
            entry = pwd.getpwnam(DEFAULT_SCRIPT_USER)
        except KeyError:
            return _Identity(None, None)
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return _Identity(None, None, f"script_user {name!r}: no such user")
    gid = entry.pw_gid
    if security.group is not None:
        try:
            gid = grp.getgrnam(security.group).gr_gid
        except KeyError:
            return _Identity(None, None, f"script_user group {security.group!r}: no such group")
    return _Identity(entry.pw_uid, gid)


def insecure_path(executable: str) -> str | None:
    """Why running `executable` as root is unsafe, or None: the file (and, for a symbolic link,
    its target) and every directory above it must belong to root and be writable by nobody
    else (no group or other write bit, unless the group is root's). A directory anyone can
    write, even with the sticky bit (/tmp), lets another user replace the script."""
    import shutil  # here: only script security needs them, not every start-up
    from pathlib import Path

    found = executable if "/" in executable else shutil.which(executable)
    if found is None:
        return None  # not found: running it fails with its own error
    candidates = [Path(os.path.abspath(found))]
    resolved = candidates[0].resolve()
    if resolved != candidates[0]:
        candidates.append(resolved)
    for path in candidates:
        for part in (path, *path.parents):
            try:
                info = part.lstat()
            except OSError as error:
                return f"{part}: {error.strerror}"
            if stat.S_ISLNK(info.st_mode):
                continue  # the link itself is not what runs; its target is checked too
            if info.st_uid != 0:
                return f"{part} belongs to uid {info.st_uid}, not root"
            if info.st_mode & stat.S_IWOTH:
                return f"{part} is writable by every user"
            if info.st_mode & stat.S_IWGRP and info.st_gid != 0:
                return f"{part} is writable by group {info.st_gid}"
    return None


class ScriptRunner:
    """Runs commands asynchronously, at most `max_concurrent` at a time.

    `run` returns when the command exited or was killed after `timeout` seconds. Cancelling the
    awaiting task also kills the process group, so no script outlives its caller. `security`
    says as whom scripts run and whether insecure ones are refused (`ScriptSecurity`); a
    refused script is a failed result with the reason, logged once per executable.
    """

    def __init__(
        self,
        *,
        max_concurrent: int = DEFAULT_CONCURRENCY,
        default_timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        security: ScriptSecurity | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._slots = asyncio.Semaphore(max_concurrent)
        self._default_timeout = default_timeout
        self._env = dict(env) if env is not None else None
        self.security = security or ScriptSecurity()
        self._identity = _identity(self.security)
        self._refusals: dict[str, str | None] = {}

    def refusal(self, executable: str) -> str | None:
        """Why `executable` may not run, or None (checked once per executable)."""
        if self._identity.error is not None:
            return self._identity.error
        if not self.security.enabled:
            return None
        runs_as = os.geteuid() if self._identity.uid is None else self._identity.uid
        if runs_as != 0:
            return None
        if executable not in self._refusals:
            problem = insecure_path(executable)
            self._refusals[executable] = problem
            if problem is not None:
                log.warning("%s: refused by enable_script_security: %s", executable, problem)
        return self._refusals[executable]

    async def run(
        self,
        command: str | Sequence[str],
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        capture_output: bool = False,
    ) -> ScriptResult:
        argv = split_command(command, args)
        if not argv:
            return ScriptResult(argv=argv, exit_code=None, error="empty command line")
        refused = self.refusal(argv[0])
        if refused is not None:
            return ScriptResult(argv=argv, exit_code=None, error=refused)
        limit = self._default_timeout if timeout is None else timeout
        async with self._slots:
            return await self._run_one(argv, limit, capture_output)

    async def _run_one(
        self, argv: tuple[str, ...], timeout: float, capture_output: bool
    ) -> ScriptResult:
        output_pipe = asyncio.subprocess.PIPE if capture_output else asyncio.subprocess.DEVNULL
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output_pipe,
                stderr=asyncio.subprocess.STDOUT if capture_output else output_pipe,
                start_new_session=True,  # its own process group, so a timeout kills all of it
                env=self._env,
                user=self._identity.uid,
                group=self._identity.gid,
            )
        except OSError as error:
            log.warning("cannot run %s: %s", shlex.join(argv), error)
            return ScriptResult(argv=argv, exit_code=None, error=str(error))

        reader = asyncio.ensure_future(_read_limited(process.stdout))
        timed_out = False
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            timed_out = True
            log.warning("%s timed out after %.1fs; killing it", shlex.join(argv), timeout)
            _kill_group(process.pid)
            await process.wait()
        except asyncio.CancelledError:
            _kill_group(process.pid)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(process.wait())
            raise
        try:
            async with asyncio.timeout(_DRAIN_GRACE):
                output = await reader
        except TimeoutError:
            output = b""
        return ScriptResult(
            argv=argv, exit_code=process.returncode, timed_out=timed_out, output=output
        )

    async def start_helper(
        self, command: str | Sequence[str], *, args: Sequence[str] = ()
    ) -> asyncio.subprocess.Process | None:
        """Start a program that runs as long as the daemon (a notify FIFO's reader): its own
        process group, no timeout, outside the concurrency limit. None if it cannot start."""
        argv = split_command(command, args)
        if argv and self.refusal(argv[0]) is not None:
            return None
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                env=self._env,
                user=self._identity.uid,
                group=self._identity.gid,
            )
        except (OSError, ValueError) as error:
            log.warning("cannot run %s: %s", shlex.join(argv), error)
            return None

    @staticmethod
    async def stop_helper(process: asyncio.subprocess.Process, grace: float) -> None:
        """SIGTERM to the helper's process group; SIGKILL if it is still there after `grace`."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                _kill_group(process.pid)
                await process.wait()


async def _read_limited(stream: asyncio.StreamReader | None) -> bytes:
    if stream is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(4096):
        if size < _OUTPUT_LIMIT:
            chunks.append(chunk[: _OUTPUT_LIMIT - size])
            size += len(chunks[-1])
    return b"".join(chunks)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip()}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


# A tool the daemon drives (nft, ip) that has not answered by then is killed.
TOOL_TIMEOUT = 30.0


async def run_command(
    argv: Sequence[str], stdin: str | None = None, *, timeout: float = TOOL_TIMEOUT
) -> str:
    """Run one of the daemon's own tools to completion, feeding `stdin`; return its stdout.

    Unlike `ScriptRunner` (operators' scripts, judged by their exit code) a tool's failure is
    an error: CommandFailed, with its stderr. A tool that hangs is killed after `timeout`.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    except (TimeoutError, asyncio.CancelledError):
        _kill_group(process.pid)
        await process.wait()
        raise
    if process.returncode != 0:
        raise CommandFailed(argv, process.returncode or -1, err.decode(errors="replace"))
    return out.decode()


class TrackScriptPoller:
    """Runs one track script every `interval` seconds and reports each result.

    `on_result(name, ok)` is called after every run, from the event loop. Runs never overlap:
    the next one starts `interval` seconds after the previous one started, or at once if the
    previous one took longer than that.
    """

    def __init__(
        self,
        runner: ScriptRunner,
        *,
        name: str,
        command: str | Sequence[str],
        interval: float,
        timeout: float,
        on_result: Callable[[str, bool], None],
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.name = name
        self._runner = runner
        self._command = command
        self._interval = interval
        self._timeout = timeout
        self._on_result = on_result
        self._checking = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._poll(), name=f"track-script-{self.name}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def checking(self) -> bool:
        """Whether the script is running at this moment (keepalived's "running" script state)."""
        return self._checking

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._checking = True
            try:
                result = await self._runner.run(self._command, timeout=self._timeout)
            finally:
                self._checking = False
            try:
                self._on_result(self.name, result.ok)
            except Exception:
                log.exception("track script %s: result callback failed", self.name)
            await asyncio.sleep(max(0.0, started + self._interval - loop.time()))
