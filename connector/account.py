"""The per-account state machine: pure transitions, no I/O.

`step(state, signal, config) -> (state, actions)` is all there is: the
supervisor feeds it what happened (worker reports, vault results, timers,
commands) and carries out the actions it returns (start or stop the worker,
ensure the session, back up, emit an event, publish the status, arm a timer).
Table tests drive it directly; time only enters through signals.

Why the supervisor, not whatsmeow, owns reconnects: whatsmeow retries a drop
forever with a growing delay and no cap, and gives up silently after a 515.
Here every drop stops the worker and starts it again after a capped, jittered
backoff, re-running the restore order first (a dropped session may be a broken
one), so the behaviour is the same for neonize and the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.workers import protocol as wp
from wa_wire import AccountStatus, CommandAction, EventType


class Phase(StrEnum):
    IDLE = "idle"  # not held, or stopped
    ENSURING = "ensuring"  # restore order running (disk, then backups)
    STARTING = "starting"  # worker started, waiting for `loaded`
    PAIRING = "pairing"  # QR shown, waiting for `paired`
    CONNECTING = "connecting"  # session loaded, waiting for `connected`
    CONNECTED = "connected"
    BACKOFF = "backoff"  # waiting to start again after a drop or crash
    HALTED = "halted"  # waiting for a command (logged out, replaced, needs QR, error)
    BANNED = "banned"  # waiting for the ban to expire
    RESTORING = "restoring"  # a commanded restore is running
    WIPING = "wiping"
    STOPPING = "stopping"  # worker asked to stop (shutdown or release)


class AfterStop(StrEnum):
    """What follows once the worker has stopped."""

    RELEASE = "release"  # forget the account (shutdown, release)
    RESTART = "restart"  # start again after the backoff
    RESTART_NOW = "restart_now"  # start again at once (515, disk repaired, reconnect)
    HALT = "halt"  # wait for a command; the status was set already
    BAN = "ban"  # wait for the ban to expire
    RESTORE = "restore"  # run the commanded restore
    WIPE = "wipe"  # run the commanded wipe


class Timer(StrEnum):
    RESTART = "restart"  # start again after backoff
    BACKUP = "backup"  # periodic backup while connected
    STUCK = "stuck"  # connecting for too long
    BAN_OVER = "ban_over"
    STOP_BOUND = "stop_bound"  # the worker did not stop in time
    REANNOUNCE = "reannounce"  # halted on an event, and no command yet: publish it again


# ---------------------------------------------------------------- signals (inputs)


@dataclass(frozen=True)
class Begin:
    """Start driving the account (the lease was acquired, or the daemon started)."""

    epoch: int


@dataclass(frozen=True)
class EnsureDone:
    """The restore order finished: `jid` set when a session is on disk now."""

    jid: str | None
    generation: int | None = None  # the generation restored, when one was
    error: str | None = None


@dataclass(frozen=True)
class Report:
    """A message from the account's worker."""

    message: wp.Message


@dataclass(frozen=True)
class WorkerExited:
    reason: str


@dataclass(frozen=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True)
class OperationDone:
    """A commanded restore or wipe finished."""

    ok: bool
    message: str
    jid: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class CommandReceived:
    command_id: str
    action: CommandAction
    generation: int | None = None


@dataclass(frozen=True)
class DiskUnhealthy:
    """The health loop found the disk session missing or corrupt."""

    detail: str


@dataclass(frozen=True)
class StopRequested:
    """Shutdown or release: stop the worker, then a final backup when it was connected (the
    session's last state, nothing written after it), then status `unattended` unless
    `show_released` is False (the lease release that follows shows it: connector/ports.Shown)."""

    final_backup: bool = True
    show_released: bool = True


Signal = (
    Begin
    | EnsureDone
    | Report
    | WorkerExited
    | TimerFired
    | OperationDone
    | CommandReceived
    | DiskUnhealthy
    | StopRequested
)

# ---------------------------------------------------------------- actions (outputs)


@dataclass(frozen=True)
class EnsureSession:
    pass


@dataclass(frozen=True)
class StartWorker:
    pass


@dataclass(frozen=True)
class StopWorker:
    kill: bool = False


@dataclass(frozen=True)
class SendOrder:
    order: str  # "pair" | "logout"


@dataclass(frozen=True)
class Backup:
    """Back the session up; `final` ones (before a release) finish before anything else."""

    while_connected: bool
    final: bool = False


@dataclass(frozen=True)
class MarkGood:
    generation: int


@dataclass(frozen=True)
class Restore:
    generation: int | None


@dataclass(frozen=True)
class Wipe:
    pass


@dataclass(frozen=True)
class Emit:
    type: EventType
    reason_code: int | None = None
    detail: str = ""
    generation: int | None = None


@dataclass(frozen=True)
class SetStatus:
    status: AccountStatus
    reason: str
    qr: tuple[str, str] | None = None  # (code, expires_at) while pairing only


@dataclass(frozen=True)
class Arm:
    """Arm a timer (re-arming replaces it).

    The delay is `seconds`; `attempt` > 0 asks the loop for the backoff delay of
    that attempt instead (capped, jittered, staggered); `until` (RFC 3339) asks
    for the time left until then.
    """

    timer: Timer
    seconds: float = 0.0
    attempt: int = 0
    until: str | None = None


@dataclass(frozen=True)
class Disarm:
    timer: Timer


@dataclass(frozen=True)
class FinishCommand:
    command_id: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Stopped:
    """The account is released: the supervisor may forget it."""


@dataclass(frozen=True)
class Reannounce:
    """Publish the account's last `type` event again, the same event (same event_id): halted on
    it, we wait for a command the control plane orders on it. The control plane drops it when
    it had it already; a delivery that was lost (a function that failed for good) comes now."""

    type: EventType


Action = (
    EnsureSession
    | StartWorker
    | StopWorker
    | SendOrder
    | Backup
    | MarkGood
    | Restore
    | Wipe
    | Emit
    | SetStatus
    | Arm
    | Disarm
    | FinishCommand
    | Stopped
    | Reannounce
)


@dataclass(frozen=True)
class Config:
    backup_interval_s: float = 10.0
    stuck_connecting_s: float = 60.0
    stop_bound_s: float = 10.0
    keepalive_restart_count: int = 4  # this many failed keepalives in a row: restart
    reannounce_s: float = 30.0  # halted and waiting for the control plane: the event again after


@dataclass(frozen=True)
class AccountState:
    account_id: str
    phase: Phase = Phase.IDLE
    epoch: int = 0
    jid: str | None = None
    attempt: int = 0  # consecutive failed starts, for the backoff
    generation_in_use: int | None = None  # restored generation, marked good on connect
    pairing_wanted: bool = False
    pending_command: str | None = None  # command id waiting for the stop or operation
    pending_generation: int | None = None  # generation of a commanded restore
    ban_until: str | None = None  # RFC 3339 end of a temporary ban
    deferred: tuple[CommandReceived, ...] = ()  # commands that arrived while busy
    after_stop: AfterStop = AfterStop.RELEASE
    status: AccountStatus = AccountStatus.CONNECTING
    final_backup: bool = False  # a release of a connected account: back up once the worker is gone
    show_released: bool = True  # a release writes `unattended` itself (False: the lease release does)


Result = tuple[AccountState, list[Action]]
