"""Transitions of the per-account state machine (types in `connector.account`).

Pure: `step` looks only at its arguments. Each handler below is one row family
of the table in tests/unit/test_account_machine.py.
"""

from __future__ import annotations

from dataclasses import replace

from connector.account import (
    AccountState,
    Action,
    AfterStop,
    Arm,
    Backup,
    Begin,
    CommandReceived,
    Config,
    Disarm,
    DiskUnhealthy,
    Emit,
    EnsureDone,
    EnsureSession,
    FinishCommand,
    MarkGood,
    OperationDone,
    Phase,
    Reannounce,
    Report,
    Restore,
    Result,
    SendOrder,
    SetStatus,
    Signal,
    StartWorker,
    Stopped,
    StopRequested,
    StopWorker,
    Timer,
    TimerFired,
    Wipe,
    WorkerExited,
)
from connector.workers import protocol as wp
from wa_wire import AccountStatus, CommandAction, EventType

S = AccountStatus
RUNNING = frozenset({Phase.STARTING, Phase.PAIRING, Phase.CONNECTING, Phase.CONNECTED})
WAITING = frozenset({Phase.HALTED, Phase.BACKOFF, Phase.BANNED})
STREAM_RESTART = 515


def step(state: AccountState, signal: Signal, config: Config) -> Result:
    """One transition: the new state and the actions to carry out, in order.

    A command that arrives while the account is busy (restore order running,
    worker stopping, an operation running) waits in `deferred` and is taken up
    as soon as the account settles, in arrival order.
    """
    state, actions = _step(state, signal, config)
    while state.deferred and not _busy(state):
        command, rest = state.deferred[0], state.deferred[1:]
        state, more = _step(replace(state, deferred=rest), command, config)
        actions = [*actions, *more]
    return state, actions


BUSY = frozenset({Phase.STOPPING, Phase.RESTORING, Phase.WIPING, Phase.ENSURING})
MAX_DEFERRED = 8


def _busy(state: AccountState) -> bool:
    return state.phase in BUSY or state.pending_command is not None


def _step(state: AccountState, signal: Signal, config: Config) -> Result:
    match signal:
        case Begin(epoch=epoch):
            return _begin(replace(state, epoch=epoch, attempt=0))
        case EnsureDone():
            return _ensure_done(state, signal, config)
        case Report(message=message):
            return _report(state, message, config)
        case WorkerExited(reason=reason):
            return _worker_exited(state, reason)
        case TimerFired(timer=timer):
            return _timer(state, timer, config)
        case OperationDone():
            return _operation_done(state, signal, config)
        case CommandReceived():
            return _command(state, signal, config)
        case DiskUnhealthy(detail=detail):
            if state.phase not in RUNNING:
                return state, []
            return _stop(
                state, AfterStop.RESTART_NOW, S.RESTORING, f"disk session {detail}; restoring", config
            )
        case StopRequested(final_backup=final_backup, show_released=show_released):
            return _stop_requested(replace(state, show_released=show_released), final_backup, config)
    raise TypeError(f"unknown signal {signal!r}")  # pragma: no cover - exhaustive above


RELEASED_REASON = "released by its connector; waiting for the next holder"
BEGIN_REASON = "checking the session on disk and in backups"
"""The `connecting` status of a start: also what a lease acquisition shows (connector/ports.Shown)."""


def _status(state: AccountState, status: AccountStatus, reason: str) -> tuple[AccountState, SetStatus]:
    return replace(state, status=status), SetStatus(status, reason)


def _begin(state: AccountState) -> Result:
    state, status = _status(state, S.CONNECTING, BEGIN_REASON)
    return replace(state, phase=Phase.ENSURING), [status, EnsureSession()]


def _ensure_done(state: AccountState, done: EnsureDone, config: Config) -> Result:
    if state.phase is not Phase.ENSURING:
        return state, []
    if done.error is not None:
        attempt = state.attempt + 1
        state, status = _status(state, S.RECONNECTING, f"session check failed: {done.error}")
        return replace(state, phase=Phase.BACKOFF, attempt=attempt), [
            status,
            Arm(Timer.RESTART, attempt=attempt),
        ]
    if done.jid is None and not state.pairing_wanted:
        state, status = _status(state, S.NEEDS_QR, "no session on disk and no usable backup: pair again")
        return replace(state, phase=Phase.HALTED, jid=None), [status]
    state = replace(state, phase=Phase.STARTING, jid=done.jid, generation_in_use=done.generation)
    return state, [StartWorker(), Arm(Timer.STUCK, seconds=config.stuck_connecting_s)]


def _report(state: AccountState, message: wp.Message, config: Config) -> Result:
    if state.phase not in RUNNING and not isinstance(message, wp.Stopped):
        return state, []  # a late report from a worker we already gave up on
    match message:
        case wp.Loaded(jid=jid):
            return _loaded(state, jid, config)
        case wp.Qr(code=code, expires_at=expires_at):
            first = state.phase is not Phase.PAIRING
            state = replace(state, phase=Phase.PAIRING, status=S.PAIRING)
            actions: list[Action] = [SetStatus(S.PAIRING, "scan the QR code", qr=(code, expires_at))]
            return state, ([Emit(EventType.PAIRING), *actions] if first else actions)
        case wp.Paired(jid=jid):
            state, status = _status(state, S.CONNECTING, "paired; connecting")
            state = replace(state, phase=Phase.CONNECTING, jid=jid, pairing_wanted=False)
            return state, [status, Emit(EventType.PAIRED, detail=jid), Backup(while_connected=True)]
        case wp.Connected():
            return _connected(state, config)
        case wp.Disconnected(reason=reason):
            state, actions = _stop(
                state, AfterStop.RESTART, S.RECONNECTING, f"disconnected: {reason}", config
            )
            return state, [Emit(EventType.DISCONNECTED, detail=reason[:2000]), *actions]
        case wp.LoggedOut(reason_code=code, on_connect=on_connect):
            reason = f"WhatsApp logged this device out ({code}); backups kept, waiting for the control plane"
            state, actions = _stop(state, AfterStop.HALT, S.NEEDS_RESTORE, reason, config)
            emit = Emit(
                EventType.LOGGED_OUT, reason_code=code, detail=f"on_connect={str(on_connect).lower()}"
            )
            return state, [emit, *actions, _reannounce_later(config)]
        case wp.StreamReplaced():
            reason = "another connection took over this device (split brain?); waiting for a command"
            state, actions = _stop(state, AfterStop.HALT, S.REPLACED, reason, config)
            return state, [Emit(EventType.STREAM_REPLACED), *actions, _reannounce_later(config)]
        case wp.StreamError(code=code):
            after = AfterStop.RESTART_NOW if code == STREAM_RESTART else AfterStop.RESTART
            state, actions = _stop(state, after, S.RECONNECTING, f"stream error {code}; restarting", config)
            return state, [Emit(EventType.STREAM_ERROR, reason_code=code), *actions]
        case wp.TemporaryBan(code=code, expires_at=expires_at):
            reason = f"temporarily banned ({code}) until {expires_at or 'unknown'}"
            state, actions = _stop(state, AfterStop.BAN, S.BANNED, reason, config)
            emit = Emit(EventType.TEMPORARY_BAN, reason_code=code, detail=expires_at or "")
            return replace(state, ban_until=expires_at), [emit, *actions]
        case wp.ClientOutdated():
            reason = "WhatsApp says this client is outdated: upgrade neonize"
            state, actions = _stop(state, AfterStop.HALT, S.ERROR, reason, config)
            return state, [Emit(EventType.CLIENT_OUTDATED, reason_code=405), *actions]
        case wp.KeepaliveTimeout(count=count):
            actions = (
                [Emit(EventType.KEEPALIVE_TIMEOUT, detail=f"{count} keepalives failed")] if count == 1 else []
            )
            if count < config.keepalive_restart_count:
                return state, actions
            state, stop = _stop(state, AfterStop.RESTART_NOW, S.RECONNECTING, "keepalives failing", config)
            return state, [*actions, *stop]
        case wp.Stopped():
            return _worker_gone(state)
        case wp.Fatal(message=text):
            state, actions = _stop(state, AfterStop.RESTART, S.ERROR, f"worker error: {text[:500]}", config)
            return state, actions
    return state, []  # keepalive_restored and the like: nothing to do


def _loaded(state: AccountState, jid: str | None, config: Config) -> Result:
    if jid is not None:
        return replace(state, phase=Phase.CONNECTING, jid=jid), []
    if state.pairing_wanted:
        state, status = _status(state, S.PAIRING, "waiting for a QR code")
        return replace(state, phase=Phase.PAIRING), [status, SendOrder("pair")]
    reason = "the session on disk is not logged in: pair again"
    return _stop(state, AfterStop.HALT, S.NEEDS_QR, reason, config)


def _connected(state: AccountState, config: Config) -> Result:
    state, status = _status(state, S.CONNECTED, "connected")
    actions: list[Action] = [
        status,
        Disarm(Timer.STUCK),
        Emit(EventType.CONNECTED, generation=state.generation_in_use),
    ]
    if state.generation_in_use is not None:
        actions.append(MarkGood(state.generation_in_use))
    actions.append(Arm(Timer.BACKUP, seconds=config.backup_interval_s))
    return replace(state, phase=Phase.CONNECTED), actions


def _stop(
    state: AccountState, after: AfterStop, status: AccountStatus | None, reason: str, config: Config
) -> Result:
    """Stop the worker; `after` says what follows once it has stopped. `status` None: no
    status now (a release writes `unattended` once the worker is gone)."""
    set_status: list[Action] = []
    if status is not None:
        state, written = _status(state, status, reason)
        set_status.append(written)
    if state.phase not in RUNNING:  # no worker to stop: go straight on
        return _after_stop(replace(state, after_stop=after), set_status)
    state = replace(state, phase=Phase.STOPPING, after_stop=after)
    return state, [
        *set_status,
        Disarm(Timer.BACKUP),
        Disarm(Timer.STUCK),
        StopWorker(),
        Arm(Timer.STOP_BOUND, seconds=config.stop_bound_s),
    ]


def _worker_gone(state: AccountState) -> Result:
    if state.phase is Phase.STOPPING:
        return _after_stop(state, [Disarm(Timer.STOP_BOUND)])
    return state, []


def _after_stop(state: AccountState, actions: list[Action]) -> Result:
    match state.after_stop:
        case AfterStop.RELEASE:
            backup: list[Action] = [Backup(while_connected=True, final=True)] if state.final_backup else []
            state, status = _status(state, S.UNATTENDED, RELEASED_REASON)
            shown: list[Action] = [status] if state.show_released else []
            return replace(state, phase=Phase.IDLE, final_backup=False), [
                *actions,
                *backup,
                *shown,
                Stopped(),
            ]
        case AfterStop.RESTART:
            attempt = state.attempt + 1
            return replace(state, phase=Phase.BACKOFF, attempt=attempt), [
                *actions,
                Arm(Timer.RESTART, attempt=attempt),
            ]
        case AfterStop.RESTART_NOW:
            return replace(state, phase=Phase.BACKOFF), [*actions, Arm(Timer.RESTART, seconds=0.0)]
        case AfterStop.HALT:
            return replace(state, phase=Phase.HALTED), actions
        case AfterStop.BAN:
            return replace(state, phase=Phase.BANNED), [*actions, Arm(Timer.BAN_OVER, until=state.ban_until)]
        case AfterStop.RESTORE:
            return replace(state, phase=Phase.RESTORING), [*actions, Restore(state.pending_generation)]
        case AfterStop.WIPE:
            return replace(state, phase=Phase.WIPING), [*actions, Wipe()]
    raise AssertionError(state.after_stop)  # pragma: no cover


def _worker_exited(state: AccountState, reason: str) -> Result:
    if state.phase is Phase.STOPPING:
        return _worker_gone(state)
    if state.phase not in RUNNING:
        return state, []
    attempt = state.attempt + 1
    state, status = _status(state, S.RECONNECTING, f"worker exited: {reason[:500]}")
    return replace(state, phase=Phase.BACKOFF, attempt=attempt), [
        status,
        Disarm(Timer.BACKUP),
        Disarm(Timer.STUCK),
        Emit(EventType.DISCONNECTED, detail=f"worker exited: {reason[:1900]}"),
        Arm(Timer.RESTART, attempt=attempt),
    ]


def _timer(state: AccountState, timer: Timer, config: Config) -> Result:
    match timer:
        case Timer.RESTART if state.phase is Phase.BACKOFF:
            return _begin(state)
        case Timer.BAN_OVER if state.phase is Phase.BANNED:
            return _begin(state)
        case Timer.BACKUP if state.phase is Phase.CONNECTED:
            # A full backup interval connected: the connection is stable, reset the backoff.
            return replace(state, attempt=0), [
                Backup(while_connected=True),
                Arm(Timer.BACKUP, seconds=config.backup_interval_s),
            ]
        case Timer.STUCK if state.phase in (Phase.STARTING, Phase.CONNECTING):
            return _stop(state, AfterStop.RESTART, S.RECONNECTING, "stuck connecting; restarting", config)
        case Timer.STOP_BOUND if state.phase is Phase.STOPPING:
            return state, [StopWorker(kill=True)]
        case Timer.REANNOUNCE if state.phase is Phase.STOPPING and state.after_stop is AfterStop.HALT:
            return state, [_reannounce_later(config)]
        case Timer.REANNOUNCE if state.phase is Phase.HALTED and state.status in HALTED_ON:
            return state, [Reannounce(HALTED_ON[state.status]), _reannounce_later(config)]
    return state, []


HALTED_ON = {S.NEEDS_RESTORE: EventType.LOGGED_OUT, S.REPLACED: EventType.STREAM_REPLACED}
"""Statuses that wait for a command the control plane orders on the event that set them."""


def _reannounce_later(config: Config) -> Arm:
    return Arm(Timer.REANNOUNCE, seconds=config.reannounce_s)


def _operation_done(state: AccountState, done: OperationDone, config: Config) -> Result:
    if state.phase not in (Phase.RESTORING, Phase.WIPING):
        return state, []
    actions: list[Action] = []
    if state.pending_command is not None:
        actions.append(FinishCommand(state.pending_command, done.ok, done.message))
    state = replace(state, pending_command=None, pending_generation=None)
    if state.phase is Phase.WIPING or not done.ok:
        status = S.NEEDS_QR if state.phase is Phase.WIPING and done.ok else S.NEEDS_RESTORE
        state, set_status = _status(state, status, done.message)
        return replace(state, phase=Phase.HALTED, jid=None if status is S.NEEDS_QR else state.jid), [
            *actions,
            set_status,
        ]
    state = replace(state, phase=Phase.STARTING, jid=done.jid, generation_in_use=done.generation, attempt=0)
    return state, [*actions, StartWorker(), Arm(Timer.STUCK, seconds=config.stuck_connecting_s)]


def _command(state: AccountState, command: CommandReceived, config: Config) -> Result:
    action, cid = command.action, command.command_id
    if _busy(state):
        if len(state.deferred) >= MAX_DEFERRED:
            return state, [
                FinishCommand(cid, False, f"busy ({state.phase.value}) with commands queued; try again")
            ]
        return replace(state, deferred=(*state.deferred, command)), []
    if action is CommandAction.RESTORE:
        state = replace(state, pending_command=cid, pending_generation=command.generation)
        return _stop(state, AfterStop.RESTORE, S.RESTORING, "restoring a backup on command", config)
    if action is CommandAction.WIPE:
        state = replace(state, pending_command=cid)
        return _stop(state, AfterStop.WIPE, S.NEEDS_QR, "wiping on command", config)
    if action is CommandAction.RECONNECT:
        state, actions = _stop(
            state, AfterStop.RESTART_NOW, S.RECONNECTING, "reconnecting on command", config
        )
        return replace(state, attempt=0), [FinishCommand(cid, True, "reconnect started"), *actions]
    if action is CommandAction.PAIR:
        if state.phase is Phase.CONNECTED:
            return state, [FinishCommand(cid, False, "already connected: logout or wipe first")]
        state = replace(state, pairing_wanted=True)
        state, actions = _stop(state, AfterStop.RESTART_NOW, S.PAIRING, "pairing on command", config)
        return state, [FinishCommand(cid, True, "pairing started: a QR code follows"), *actions]
    if action is CommandAction.LOGOUT:
        if state.phase not in RUNNING:
            return state, [FinishCommand(cid, False, "not connected: nothing to log out")]
        state, status = _status(state, S.NEEDS_QR, "logged out on command")
        state = replace(state, phase=Phase.STOPPING, after_stop=AfterStop.HALT)
        return state, [
            FinishCommand(cid, True, "logout sent"),
            status,
            Disarm(Timer.BACKUP),
            SendOrder("logout"),
            Arm(Timer.STOP_BOUND, seconds=config.stop_bound_s),
        ]
    # release: hand the account over (stop, then a final backup when it was connected); the
    # daemon takes the command itself (Daemon._release_on_command: this, and the lease freed)
    state, actions = _stop_requested(replace(state, show_released=True), True, config)
    return state, [FinishCommand(cid, True, "released"), *actions]


def _stop_requested(state: AccountState, final_backup: bool, config: Config) -> Result:
    """Stop first, back up after: a backup taken while the worker still runs would miss what
    the session writes before the socket closes, and the next holder restores this one."""
    state = replace(state, final_backup=final_backup and state.phase is Phase.CONNECTED)
    return _stop(state, AfterStop.RELEASE, None, "", config)
