"""What the health monitor (`core.health`) is given and what it answers, as frozen records.

Owns the settings it needs (per checker, real server and virtual server, resolved by the caller
from keepalived.conf), the facts about finished checks, and the orders it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vipkeeper.core.endpoint import Endpoint as Endpoint  # offered here with the records
from vipkeeper.core.pool import Pool
from vipkeeper.core.records import record

# ---------------------------------------------------------------------------------------------
# Configuration the core needs (resolved by the caller from the keepalived.conf model: the
# virtual-server value is the default for real servers, the real-server value for checkers).


@record
class CheckerSpec:
    """Timing and policy of one checker (HTTP_GET, TCP_CHECK, MISC_CHECK ...) of a real server."""

    delay_loop: float = 60.0
    retry: int = 1  # keepalived's default; 0 for MISC_CHECK, 3 for DNS_CHECK
    delay_before_retry: float = 1.0  # keepalived: 3 s for HTTP_GET / SSL_GET, 1 s otherwise
    alpha: bool = False
    misc_dynamic: bool = False
    initial_delay: float = 0.0  # keepalived's warmup: the caller draws the random delay

    def __post_init__(self) -> None:
        if self.delay_loop <= 0 or self.delay_before_retry < 0 or self.initial_delay < 0:
            raise ValueError(f"checker timers must be positive: {self}")
        if self.retry < 0:
            raise ValueError(f"retry must be >= 0, got {self.retry}")


@record
class RealServerSpec:
    server: Endpoint
    weight: int = 1
    inhibit_on_failure: bool = False
    notify_up: str | None = None
    notify_down: str | None = None
    checkers: tuple[CheckerSpec, ...] = ()


@record
class VirtualServerSpec:
    name: str  # unique, e.g. "172.16.9.1:80" or "fwmark 1"
    real_servers: tuple[RealServerSpec, ...]
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: str | None = None
    quorum_down: str | None = None
    sorry_server: Endpoint | None = None
    sorry_server_weight: int = 1
    sorry_server_inhibit: bool = False  # keep the sorry server in the pool at weight 0
    omega: bool = False


@dataclass(frozen=True, kw_only=True, order=True)
class CheckerId:
    """Names one checker: the `index`-th checker of `server` in `virtual_server`."""

    virtual_server: str
    server: Endpoint
    index: int


# ---------------------------------------------------------------------------------------------
# Inputs: facts about finished checks. Records of one shape share a base that defines its
# fields once; a base is never an event itself, so matching by class stays exact.


@record
class CheckResult:
    """A finished check of `checker`."""

    checker: CheckerId


class CheckSucceeded(CheckResult):
    """The check passed."""


@record
class CheckFailed(CheckResult):
    reason: str


@record
class MiscResult(CheckResult):
    """A MISC_CHECK script finished; `exit_code` None: it timed out, was killed or never ran."""

    exit_code: int | None


HealthEvent = CheckSucceeded | CheckFailed | MiscResult


# ---------------------------------------------------------------------------------------------
# Outputs: orders for the adapters.


@record
class RunCheck:
    """Run this checker now and report its result with `HealthMonitor.handle`."""

    checker: CheckerId


@record
class ServerChange:
    """Something happened to real server `server` of `virtual_server`."""

    virtual_server: str
    server: Endpoint


@record
class ServerVerdict(ServerChange):
    """The real server's checks decided it is up or down, for `reason`."""

    reason: str


class ServerUp(ServerVerdict):
    """The real server's checks pass: it is up."""


class ServerDown(ServerVerdict):
    """A check failed for good: the server is down (out of the pool, or at weight 0 with
    inhibit_on_failure)."""


@record
class WeightChanged(ServerChange):
    """misc_dynamic moved a real server's weight."""

    old: int
    new: int


@record
class QuorumChange:
    """The virtual server's live weight crossed its quorum (with hysteresis)."""

    virtual_server: str
    live_weight: int


class QuorumGained(QuorumChange):
    """The live weight reached quorum + hysteresis."""


class QuorumLost(QuorumChange):
    """The live weight fell below quorum - hysteresis, or to zero."""


@record
class PoolChanged:
    """The virtual server's desired pool: the LB backend makes the kernel match `pool`."""

    virtual_server: str
    pool: Pool


class NotifyKind(Enum):
    NOTIFY_UP = "notify_up"
    NOTIFY_DOWN = "notify_down"
    QUORUM_UP = "quorum_up"
    QUORUM_DOWN = "quorum_down"


@record
class RunNotifyScript:
    """Run a configured notify_up / notify_down / quorum_up / quorum_down script."""

    script: str
    kind: NotifyKind
    virtual_server: str
    server: Endpoint | None  # None for quorum scripts


HealthEffect = (
    RunCheck
    | ServerUp
    | ServerDown
    | WeightChanged
    | QuorumGained
    | QuorumLost
    | PoolChanged
    | RunNotifyScript
)
