"""The running Compose lab, seen through the Docker SDK.

Owns: finding the project's containers by their Compose labels, running commands in them, and
the container-level operations faults are made of (kill, stop, start, pause, unpause, network
disconnect/connect).  Must never: send traffic to lab addresses from the host (every probe runs
inside a container), or touch containers outside its Compose project.
"""

from __future__ import annotations

import fcntl
import io
import os
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import docker
from docker.models.containers import Container
from docker.utils.socket import STDOUT, frames_iter

from harness.topology import Topology, lab_topology

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class LabError(RuntimeError):
    """The lab is not there, or not in the state an operation needs."""


@dataclass(frozen=True, kw_only=True)
class ExecResult:
    exit_code: int
    output: str
    refused_paused: bool = False  # not run: the container is paused (see Lab.exec)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class ExecStream:
    """The standard output of a process started with `Lab.exec_stream`, read as it comes.
    `close()` (from any thread) ends the reading; the process then dies writing to the closed
    stream (SIGPIPE or EPIPE)."""

    def __init__(self, raw: Any, *, container_id: str) -> None:
        self._raw = raw
        self.container_id = container_id  # the container the process runs in
        self._socket: socket.socket | None = getattr(raw, "_sock", None)

    def chunks(self) -> Iterator[bytes]:
        for kind, data in frames_iter(self._raw, tty=False):
            if kind == STDOUT and data:
                yield bytes(data)

    def close(self) -> None:
        if self._socket is not None:
            with suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            self._raw.close()


class Lab:
    """One Compose project's containers, by service name."""

    kind: ClassVar[str] = "compose"  # harness.inventory.InventoryLab is the other kind

    def __init__(
        self,
        project: str | None = None,
        client: docker.DockerClient | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.topology = topology or lab_topology()
        self.project = project or self.topology.project
        self.docker = client or docker.from_env()
        self._saved_addresses: dict[tuple[str, str], str] = {}
        # `docker exec` and `docker pause` on one container never overlap: an exec whose process
        # is created while the container freezes is frozen with it, and then the Docker daemon
        # hangs on that container for good (seen once in CI: every later test timed out).
        # Within a process a lock per service; across processes (`make watch` while
        # `make fault NAME=pause` runs) a host lock file per service, shared by execs and
        # exclusive for pause/unpause (`_host_lock`).
        self._guards: dict[str, threading.Lock] = {}
        self._guards_lock = threading.Lock()

    # --- discovery ------------------------------------------------------------------------------
    def containers(self) -> dict[str, Container]:
        """service -> container, for every container of the project (running or not)."""
        found = self.docker.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        return {c.labels[SERVICE_LABEL]: c for c in found}

    def container(self, service: str) -> Container:
        # Filtered by both labels: the engine returns (and the SDK inspects) this one only.
        labels = [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]
        found = self.docker.containers.list(all=True, filters={"label": labels})
        if not found:
            raise LabError(f"no service {service!r} in Compose project {self.project!r}")
        return found[0]

    @property
    def hosts(self) -> list[str]:
        return sorted(self.containers())

    def state(self, service: str) -> str:
        """Docker's status: running, paused, exited, created, ..."""
        return str(self.container(service).status)

    def is_running(self, services: tuple[str, ...] | None = None) -> bool:
        states = {s: c.status for s, c in self.containers().items()}
        wanted = services or tuple(states)
        return bool(states) and all(states.get(s) == "running" for s in wanted)

    def testinfra_host(self, service: str) -> Any:
        """A testinfra host for the service's container (`docker://NAME`)."""
        import testinfra

        return testinfra.get_host(f"docker://{self.container(service).name}")

    # --- commands -------------------------------------------------------------------------------
    def exec(
        self, service: str, cmd: list[str] | str, *, timeout: float | None = 30, check: bool = False
    ) -> ExecResult:
        """Run `cmd` in the service's container; return its exit code and combined output.

        `timeout` is enforced inside the container by coreutils `timeout` (exit code 124).
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if timeout is not None:
            argv = ["timeout", "-s", "KILL", f"{timeout:g}", *argv]
        with self._guard(service), self._host_lock(service, exclusive=False):
            container = self.container(service)
            if container.status == "paused":
                result = ExecResult(exit_code=-1, output="paused", refused_paused=True)
            else:
                code, output = container.exec_run(argv, demux=False)
                result = ExecResult(
                    exit_code=int(code), output=(output or b"").decode(errors="replace")
                )
        if check and not result.ok:
            raise LabError(f"{service}: {argv!r} exited {result.exit_code}: {result.output}")
        return result

    def exec_detached(self, service: str, cmd: list[str]) -> None:
        with self._guard(service), self._host_lock(service, exclusive=False):
            container = self.container(service)
            if container.status != "paused":
                container.exec_run(cmd, detach=True)

    def exec_stream(self, service: str, argv: list[str]) -> ExecStream | None:
        """Start a long-running `argv` in the service's container and return its stdout stream;
        None when the container is paused.  The stream ends when the process or the container
        does; a `docker pause` later only stalls it (the process exists before the freeze,
        which is what `pause` must not overlap, see `exec`)."""
        with self._guard(service), self._host_lock(service, exclusive=False):
            container = self.container(service)
            if container.status == "paused":
                return None
            api = self.docker.api
            exec_id = api.exec_create(container.id, argv, stdout=True, stderr=False)
            return ExecStream(api.exec_start(exec_id, socket=True), container_id=container.id)

    def states(self) -> dict[str, tuple[str, str]]:
        """service -> (container id, Docker status) for the whole project, in one request to
        the engine (no per-container inspection: cheap enough to ask several times a second)."""
        found = self.docker.api.containers(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        states: dict[str, tuple[str, str]] = {}
        # A running container wins over another of the same service (Compose recreating one).
        for c in sorted(found, key=lambda c: c.get("State") == "running"):
            if SERVICE_LABEL in (c.get("Labels") or {}):
                states[c["Labels"][SERVICE_LABEL]] = (str(c["Id"]), str(c["State"]))
        return states

    def _guard(self, service: str) -> threading.Lock:
        with self._guards_lock:
            return self._guards.setdefault(service, threading.Lock())

    @contextmanager
    def _host_lock(self, service: str, *, exclusive: bool) -> Iterator[None]:
        path = Path(tempfile.gettempdir()) / f"vipkeeper-harness.{self.project}.{service}.lock"
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def put_file(self, service: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write `data` to `path` in the container (its directory must exist)."""
        target = PurePosixPath(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(target.name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self.container(service).put_archive(str(target.parent), buf.getvalue()):
            raise LabError(f"{service}: cannot write {path}")

    def netns_run(self, service: str, script: str, *, writable_sysctls: bool = False) -> ExecResult:
        """Run `sh -c script` in a short-lived helper container that joins the service's network
        namespace (so it works on a paused container too), from the service's own image.

        `writable_sysctls` gives the helper a writable /proc/sys (systempaths=unconfined): the
        way to change the service's net.* sysctls without making the service itself able to
        write /proc/sys.  Only the harness's fixed scripts run there.
        """
        target = self.container(service)
        api = self.docker.api
        host_config = api.create_host_config(network_mode=f"container:{target.id}")
        if writable_sysctls:
            # What the CLI's `--security-opt systempaths=unconfined` sends: empty (not absent)
            # masked and read-only path lists.
            host_config["MaskedPaths"] = []
            host_config["ReadonlyPaths"] = []
        created = api.create_container(
            target.image.id,
            ["-c", script],
            entrypoint=["sh"],
            host_config=host_config,
            labels={"vipkeeper.harness.helper": self.project},
        )
        helper = self.docker.containers.get(created["Id"])
        helper.start()
        try:
            status = helper.wait(timeout=60)
            output = helper.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            helper.remove(force=True)
        return ExecResult(exit_code=int(status.get("StatusCode", 1)), output=output)

    def environment(self, service: str) -> dict[str, str]:
        """The container's configured environment (what compose.yaml passed it)."""
        pairs = self.container(service).attrs["Config"].get("Env") or []
        return dict(p.split("=", 1) for p in pairs if "=" in p)

    def mount_source(self, service: str, target: str) -> str | None:
        """The host path the service's container has mounted at `target`."""
        for mount in self.container(service).attrs.get("Mounts") or []:
            if mount.get("Destination") == target:
                return str(mount.get("Source"))
        return None

    def director_daemon(self) -> str:
        """Which daemon the directors run: compose.yaml's DIRECTOR_DAEMON as the first
        director's container received it ("vipkeeper" or "keepalived")."""
        first = self.topology.director_names[0]
        return self.environment(first).get("DIRECTOR_DAEMON") or "vipkeeper"

    def logs(self, service: str, *, since: float | None = None) -> str:
        """The service's container log (stdout and stderr), from `since` (wall clock) on."""
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True}
        if since is not None:
            kwargs["since"] = int(since)  # the engine takes whole seconds
        return bytes(self.container(service).logs(**kwargs)).decode(errors="replace")

    # --- Compose --------------------------------------------------------------------------------
    def compose_up(
        self, services: tuple[str, ...], *, env: Mapping[str, str] | None = None
    ) -> None:
        """`docker compose up -d --no-deps SERVICES` with `env` added to the environment
        (compose.yaml reads e.g. LAB_DIR1_CONF from it): Compose recreates a service whose
        configuration changed and leaves the others alone."""
        compose = ["docker", "compose", "-f", str(self.topology.compose_file), "-p", self.project]
        result = subprocess.run(
            [*compose, "up", "-d", "--no-deps", *services],
            cwd=self.topology.root,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise LabError(f"docker compose up {' '.join(services)}: {result.stderr}")

    # --- container operations (the raw material of faults) -------------------------------------
    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.container(service).kill(signal=signal)

    def stop(self, service: str, timeout: int = 5) -> None:
        self.container(service).stop(timeout=timeout)

    def start(self, service: str) -> None:
        self.container(service).start()

    def pause(self, service: str) -> None:
        """`docker pause`, once no exec into the container is under way (see `exec`)."""
        with self._guard(service), self._host_lock(service, exclusive=True):
            self.container(service).pause()

    def unpause(self, service: str) -> None:
        with self._guard(service), self._host_lock(service, exclusive=True):
            self.container(service).unpause()

    def network_name(self, network: str) -> str:
        return f"{self.project}_{network}"

    def address(self, service: str, network: str) -> str | None:
        nets = self.container(service).attrs["NetworkSettings"]["Networks"]
        entry = nets.get(self.network_name(network))
        return entry["IPAddress"] if entry else None

    def mac(self, service: str, network: str) -> str | None:
        nets = self.container(service).attrs["NetworkSettings"]["Networks"]
        entry = nets.get(self.network_name(network))
        return entry["MacAddress"].lower() if entry else None

    def service_of_mac(self, mac: str) -> str | None:
        for service, container in self.containers().items():
            for entry in container.attrs["NetworkSettings"]["Networks"].values():
                if entry.get("MacAddress", "").lower() == mac.lower():
                    return service
        return None

    def disconnect(self, service: str, network: str) -> None:
        """Unplug the service from a network (its address is kept for `connect`)."""
        address = self.address(service, network)
        if address:
            self._saved_addresses[(service, network)] = address
        self.docker.networks.get(self.network_name(network)).disconnect(
            self.container(service), force=True
        )

    def connect(self, service: str, network: str) -> None:
        """Plug the service back in with the address it had.  The interface may come back
        with another name (Docker names by attach order)."""
        self.docker.networks.get(self.network_name(network)).connect(
            self.container(service),
            ipv4_address=self._saved_addresses.get((service, network)),
            aliases=[service],
        )
