"""The per-account state machine, row by row: (state, signal) -> (phase, status, actions)."""

from __future__ import annotations

from dataclasses import replace

import pytest

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
from connector.account_machine import RELEASED_REASON, step
from connector.workers import protocol as wp
from wa_wire import AccountStatus as S
from wa_wire import CommandAction, EventType

CFG = Config(
    backup_interval_s=10, stuck_connecting_s=60, stop_bound_s=10, keepalive_restart_count=4, reannounce_s=30
)
A = "acct-1"
JID = "15550001111:7@s.whatsapp.net"
EXPIRY = "2026-11-26T03:00:00.000000Z"


def at(phase: Phase, **kw: object) -> AccountState:
    return replace(AccountState(account_id=A, epoch=3, jid=JID), phase=phase, **kw)  # type: ignore[arg-type]


STOPPING: list[Action] = [
    Disarm(Timer.BACKUP),
    Disarm(Timer.STUCK),
    StopWorker(),
    Arm(Timer.STOP_BOUND, seconds=10),
]

ROWS: list[tuple[str, AccountState, Signal, Phase, S, list[Action]]] = [
    # --- start: the restore order first, then the worker
    (
        "begin ensures the session",
        AccountState(account_id=A),
        Begin(epoch=4),
        Phase.ENSURING,
        S.CONNECTING,
        [SetStatus(S.CONNECTING, "checking the session on disk and in backups"), EnsureSession()],
    ),
    (
        "session on disk -> worker",
        at(Phase.ENSURING),
        EnsureDone(jid=JID),
        Phase.STARTING,
        S.CONNECTING,
        [StartWorker(), Arm(Timer.STUCK, seconds=60)],
    ),
    (
        "no session, no backup -> needs_qr",
        at(Phase.ENSURING),
        EnsureDone(jid=None),
        Phase.HALTED,
        S.NEEDS_QR,
        [SetStatus(S.NEEDS_QR, "no session on disk and no usable backup: pair again")],
    ),
    (
        "no session but pairing wanted -> worker",
        at(Phase.ENSURING, pairing_wanted=True),
        EnsureDone(jid=None),
        Phase.STARTING,
        S.CONNECTING,
        [StartWorker(), Arm(Timer.STUCK, seconds=60)],
    ),
    (
        "session check error -> backoff",
        at(Phase.ENSURING),
        EnsureDone(jid=None, error="firestore down"),
        Phase.BACKOFF,
        S.RECONNECTING,
        [SetStatus(S.RECONNECTING, "session check failed: firestore down"), Arm(Timer.RESTART, attempt=1)],
    ),
    (
        "late ensure result ignored",
        at(Phase.CONNECTED),
        EnsureDone(jid=JID),
        Phase.CONNECTED,
        S.CONNECTING,
        [],
    ),
    # --- worker reports
    (
        "loaded with jid",
        at(Phase.STARTING),
        Report(wp.Loaded(account=A, jid=JID)),
        Phase.CONNECTING,
        S.CONNECTING,
        [],
    ),
    (
        "loaded without jid, pairing wanted -> pair",
        at(Phase.STARTING, pairing_wanted=True),
        Report(wp.Loaded(account=A, jid=None)),
        Phase.PAIRING,
        S.PAIRING,
        [SetStatus(S.PAIRING, "waiting for a QR code"), SendOrder("pair")],
    ),
    (
        "loaded without jid, no pairing wanted -> needs_qr",
        at(Phase.STARTING),
        Report(wp.Loaded(account=A, jid=None)),
        Phase.STOPPING,
        S.NEEDS_QR,
        [SetStatus(S.NEEDS_QR, "the session on disk is not logged in: pair again"), *STOPPING],
    ),
    (
        "first qr: pairing event without the code, code only in the status",
        at(Phase.STARTING),
        Report(wp.Qr(account=A, code="2@secret", expires_at=EXPIRY)),
        Phase.PAIRING,
        S.PAIRING,
        [Emit(EventType.PAIRING), SetStatus(S.PAIRING, "scan the QR code", qr=("2@secret", EXPIRY))],
    ),
    (
        "next qr: status only",
        at(Phase.PAIRING),
        Report(wp.Qr(account=A, code="2@next", expires_at=EXPIRY)),
        Phase.PAIRING,
        S.PAIRING,
        [SetStatus(S.PAIRING, "scan the QR code", qr=("2@next", EXPIRY))],
    ),
    (
        "paired -> backup right away",
        at(Phase.PAIRING, pairing_wanted=True),
        Report(wp.Paired(account=A, jid=JID)),
        Phase.CONNECTING,
        S.CONNECTING,
        [SetStatus(S.CONNECTING, "paired; connecting"), Emit(EventType.PAIRED, detail=JID), Backup(True)],
    ),
    (
        "connected after a restore marks that generation good",
        at(Phase.CONNECTING, generation_in_use=7),
        Report(wp.Connected(account=A)),
        Phase.CONNECTED,
        S.CONNECTED,
        [
            SetStatus(S.CONNECTED, "connected"),
            Disarm(Timer.STUCK),
            Emit(EventType.CONNECTED, generation=7),
            MarkGood(7),
            Arm(Timer.BACKUP, seconds=10),
        ],
    ),
    (
        "drop -> stop worker, then backoff",
        at(Phase.CONNECTED),
        Report(wp.Disconnected(account=A, reason="428 connection closed")),
        Phase.STOPPING,
        S.RECONNECTING,
        [
            Emit(EventType.DISCONNECTED, detail="428 connection closed"),
            SetStatus(S.RECONNECTING, "disconnected: 428 connection closed"),
            *STOPPING,
        ],
    ),
    (
        "logged out: report, keep backups, no backup, wait for the control plane",
        at(Phase.CONNECTED),
        Report(wp.LoggedOut(account=A, reason_code=401, on_connect=True)),
        Phase.STOPPING,
        S.NEEDS_RESTORE,
        [
            Emit(EventType.LOGGED_OUT, reason_code=401, detail="on_connect=true"),
            SetStatus(
                S.NEEDS_RESTORE,
                "WhatsApp logged this device out (401); backups kept, waiting for the control plane",
            ),
            *STOPPING,
            Arm(Timer.REANNOUNCE, seconds=30),
        ],
    ),
    (
        "stream replaced: no reconnect",
        at(Phase.CONNECTED),
        Report(wp.StreamReplaced(account=A)),
        Phase.STOPPING,
        S.REPLACED,
        [
            Emit(EventType.STREAM_REPLACED),
            SetStatus(
                S.REPLACED, "another connection took over this device (split brain?); waiting for a command"
            ),
            *STOPPING,
            Arm(Timer.REANNOUNCE, seconds=30),
        ],
    ),
    (
        "halted on a logout, no command yet: the logged_out event again, and again later",
        at(Phase.HALTED, status=S.NEEDS_RESTORE),
        TimerFired(Timer.REANNOUNCE),
        Phase.HALTED,
        S.NEEDS_RESTORE,
        [Reannounce(EventType.LOGGED_OUT), Arm(Timer.REANNOUNCE, seconds=30)],
    ),
    (
        "halted on a split brain, no command yet: the stream_replaced event again",
        at(Phase.HALTED, status=S.REPLACED),
        TimerFired(Timer.REANNOUNCE),
        Phase.HALTED,
        S.REPLACED,
        [Reannounce(EventType.STREAM_REPLACED), Arm(Timer.REANNOUNCE, seconds=30)],
    ),
    (
        "still stopping after a logout: not yet, try later",
        at(Phase.STOPPING, status=S.NEEDS_RESTORE, after_stop=AfterStop.HALT),
        TimerFired(Timer.REANNOUNCE),
        Phase.STOPPING,
        S.NEEDS_RESTORE,
        [Arm(Timer.REANNOUNCE, seconds=30)],
    ),
    (
        "the command came (restoring): the timer is late, nothing",
        at(Phase.RESTORING, status=S.RESTORING),
        TimerFired(Timer.REANNOUNCE),
        Phase.RESTORING,
        S.RESTORING,
        [],
    ),
    (
        "halted after a failed wipe (needs_qr): nothing to announce",
        at(Phase.HALTED, status=S.NEEDS_QR),
        TimerFired(Timer.REANNOUNCE),
        Phase.HALTED,
        S.NEEDS_QR,
        [],
    ),
    (
        "515 -> restart at once",
        at(Phase.CONNECTED),
        Report(wp.StreamError(account=A, code=515)),
        Phase.STOPPING,
        S.RECONNECTING,
        [
            Emit(EventType.STREAM_ERROR, reason_code=515),
            SetStatus(S.RECONNECTING, "stream error 515; restarting"),
            *STOPPING,
        ],
    ),
    (
        "temporary ban",
        at(Phase.CONNECTED),
        Report(wp.TemporaryBan(account=A, code=402, expires_at=EXPIRY)),
        Phase.STOPPING,
        S.BANNED,
        [
            Emit(EventType.TEMPORARY_BAN, reason_code=402, detail=EXPIRY),
            SetStatus(S.BANNED, f"temporarily banned (402) until {EXPIRY}"),
            *STOPPING,
        ],
    ),
    (
        "client outdated halts",
        at(Phase.CONNECTED),
        Report(wp.ClientOutdated(account=A)),
        Phase.STOPPING,
        S.ERROR,
        [
            Emit(EventType.CLIENT_OUTDATED, reason_code=405),
            SetStatus(S.ERROR, "WhatsApp says this client is outdated: upgrade neonize"),
            *STOPPING,
        ],
    ),
    (
        "first keepalive timeout: event only",
        at(Phase.CONNECTED, status=S.CONNECTED),
        Report(wp.KeepaliveTimeout(account=A, count=1)),
        Phase.CONNECTED,
        S.CONNECTED,
        [Emit(EventType.KEEPALIVE_TIMEOUT, detail="1 keepalives failed")],
    ),
    (
        "keepalives failing for long: restart",
        at(Phase.CONNECTED, status=S.CONNECTED),
        Report(wp.KeepaliveTimeout(account=A, count=4)),
        Phase.STOPPING,
        S.RECONNECTING,
        [SetStatus(S.RECONNECTING, "keepalives failing"), *STOPPING],
    ),
    (
        "fatal -> error, then backoff",
        at(Phase.STARTING),
        Report(wp.Fatal(account=A, message="failed to upgrade database")),
        Phase.STOPPING,
        S.ERROR,
        [SetStatus(S.ERROR, "worker error: failed to upgrade database"), *STOPPING],
    ),
    (
        "report from a worker we gave up on",
        at(Phase.HALTED, status=S.NEEDS_RESTORE),
        Report(wp.Connected(account=A)),
        Phase.HALTED,
        S.NEEDS_RESTORE,
        [],
    ),
    # --- the worker stopped: what follows depends on why
    (
        "stopped after a drop -> backoff attempt 1",
        at(Phase.STOPPING, after_stop=AfterStop.RESTART),
        Report(wp.Stopped(account=A)),
        Phase.BACKOFF,
        S.CONNECTING,
        [Disarm(Timer.STOP_BOUND), Arm(Timer.RESTART, attempt=1)],
    ),
    (
        "stopped after 515 -> immediate restart",
        at(Phase.STOPPING, after_stop=AfterStop.RESTART_NOW, attempt=2),
        WorkerExited("exit 0"),
        Phase.BACKOFF,
        S.CONNECTING,
        [Disarm(Timer.STOP_BOUND), Arm(Timer.RESTART, seconds=0.0)],
    ),
    (
        "stopped after logout -> halted",
        at(Phase.STOPPING, after_stop=AfterStop.HALT, status=S.NEEDS_RESTORE),
        WorkerExited("exit 0"),
        Phase.HALTED,
        S.NEEDS_RESTORE,
        [Disarm(Timer.STOP_BOUND)],
    ),
    (
        "stopped after a ban -> wait for its end",
        at(Phase.STOPPING, after_stop=AfterStop.BAN, ban_until=EXPIRY, status=S.BANNED),
        WorkerExited("exit 0"),
        Phase.BANNED,
        S.BANNED,
        [Disarm(Timer.STOP_BOUND), Arm(Timer.BAN_OVER, until=EXPIRY)],
    ),
    (
        "stopped for release -> unattended, forgotten",
        at(Phase.STOPPING, after_stop=AfterStop.RELEASE),
        WorkerExited("exit 0"),
        Phase.IDLE,
        S.UNATTENDED,
        [Disarm(Timer.STOP_BOUND), SetStatus(S.UNATTENDED, RELEASED_REASON), Stopped()],
    ),
    (
        "worker did not stop in time -> kill",
        at(Phase.STOPPING, after_stop=AfterStop.RESTART),
        TimerFired(Timer.STOP_BOUND),
        Phase.STOPPING,
        S.CONNECTING,
        [StopWorker(kill=True)],
    ),
    (
        "worker crash -> backoff",
        at(Phase.CONNECTED, attempt=2),
        WorkerExited("killed by signal 9"),
        Phase.BACKOFF,
        S.RECONNECTING,
        [
            SetStatus(S.RECONNECTING, "worker exited: killed by signal 9"),
            Disarm(Timer.BACKUP),
            Disarm(Timer.STUCK),
            Emit(EventType.DISCONNECTED, detail="worker exited: killed by signal 9"),
            Arm(Timer.RESTART, attempt=3),
        ],
    ),
    ("exit of a worker already gone", at(Phase.BACKOFF), WorkerExited("x"), Phase.BACKOFF, S.CONNECTING, []),
    # --- timers
    (
        "restart timer -> restore order again",
        at(Phase.BACKOFF, attempt=3),
        TimerFired(Timer.RESTART),
        Phase.ENSURING,
        S.CONNECTING,
        [SetStatus(S.CONNECTING, "checking the session on disk and in backups"), EnsureSession()],
    ),
    (
        "backup timer while connected: backup, re-arm, backoff reset",
        at(Phase.CONNECTED, attempt=3, status=S.CONNECTED),
        TimerFired(Timer.BACKUP),
        Phase.CONNECTED,
        S.CONNECTED,
        [Backup(True), Arm(Timer.BACKUP, seconds=10)],
    ),
    (
        "backup timer when not connected",
        at(Phase.BACKOFF),
        TimerFired(Timer.BACKUP),
        Phase.BACKOFF,
        S.CONNECTING,
        [],
    ),
    (
        "stuck connecting -> restart worker",
        at(Phase.CONNECTING),
        TimerFired(Timer.STUCK),
        Phase.STOPPING,
        S.RECONNECTING,
        [SetStatus(S.RECONNECTING, "stuck connecting; restarting"), *STOPPING],
    ),
    (
        "ban over -> start",
        at(Phase.BANNED, status=S.BANNED),
        TimerFired(Timer.BAN_OVER),
        Phase.ENSURING,
        S.CONNECTING,
        [SetStatus(S.CONNECTING, "checking the session on disk and in backups"), EnsureSession()],
    ),
    # --- health loop
    (
        "disk session broken while running -> stop, restore at once",
        at(Phase.CONNECTED),
        DiskUnhealthy("corrupt"),
        Phase.STOPPING,
        S.RESTORING,
        [SetStatus(S.RESTORING, "disk session corrupt; restoring"), *STOPPING],
    ),
    (
        "disk broken while halted: left alone",
        at(Phase.HALTED),
        DiskUnhealthy("missing"),
        Phase.HALTED,
        S.CONNECTING,
        [],
    ),
    # --- commands
    (
        "restore command while halted",
        at(Phase.HALTED, status=S.NEEDS_RESTORE),
        CommandReceived("c1", CommandAction.RESTORE, generation=5),
        Phase.RESTORING,
        S.RESTORING,
        [SetStatus(S.RESTORING, "restoring a backup on command"), Restore(5)],
    ),
    (
        "restore command while connected stops the worker first",
        at(Phase.CONNECTED),
        CommandReceived("c1", CommandAction.RESTORE),
        Phase.STOPPING,
        S.RESTORING,
        [SetStatus(S.RESTORING, "restoring a backup on command"), *STOPPING],
    ),
    (
        "restore done -> start the worker, command finished",
        at(Phase.RESTORING, pending_command="c1"),
        OperationDone(ok=True, message="restored generation 5", jid=JID, generation=5),
        Phase.STARTING,
        S.CONNECTING,
        [FinishCommand("c1", True, "restored generation 5"), StartWorker(), Arm(Timer.STUCK, seconds=60)],
    ),
    (
        "restore failed -> needs_restore",
        at(Phase.RESTORING, pending_command="c1"),
        OperationDone(ok=False, message="no good generation"),
        Phase.HALTED,
        S.NEEDS_RESTORE,
        [FinishCommand("c1", False, "no good generation"), SetStatus(S.NEEDS_RESTORE, "no good generation")],
    ),
    (
        "wipe command while halted",
        at(Phase.HALTED),
        CommandReceived("c2", CommandAction.WIPE),
        Phase.WIPING,
        S.NEEDS_QR,
        [SetStatus(S.NEEDS_QR, "wiping on command"), Wipe()],
    ),
    (
        "wipe done -> needs_qr",
        at(Phase.WIPING, pending_command="c2"),
        OperationDone(ok=True, message="wiped"),
        Phase.HALTED,
        S.NEEDS_QR,
        [FinishCommand("c2", True, "wiped"), SetStatus(S.NEEDS_QR, "wiped")],
    ),
    (
        "reconnect command when replaced",
        at(Phase.HALTED, status=S.REPLACED, attempt=4),
        CommandReceived("c3", CommandAction.RECONNECT),
        Phase.BACKOFF,
        S.RECONNECTING,
        [
            FinishCommand("c3", True, "reconnect started"),
            SetStatus(S.RECONNECTING, "reconnecting on command"),
            Arm(Timer.RESTART, seconds=0.0),
        ],
    ),
    (
        "pair command when connected is refused",
        at(Phase.CONNECTED),
        CommandReceived("c4", CommandAction.PAIR),
        Phase.CONNECTED,
        S.CONNECTING,
        [FinishCommand("c4", False, "already connected: logout or wipe first")],
    ),
    (
        "pair command when needs_qr",
        at(Phase.HALTED, status=S.NEEDS_QR),
        CommandReceived("c4", CommandAction.PAIR),
        Phase.BACKOFF,
        S.PAIRING,
        [
            FinishCommand("c4", True, "pairing started: a QR code follows"),
            SetStatus(S.PAIRING, "pairing on command"),
            Arm(Timer.RESTART, seconds=0.0),
        ],
    ),
    (
        "logout command sends logout to the worker",
        at(Phase.CONNECTED),
        CommandReceived("c5", CommandAction.LOGOUT),
        Phase.STOPPING,
        S.NEEDS_QR,
        [
            FinishCommand("c5", True, "logout sent"),
            SetStatus(S.NEEDS_QR, "logged out on command"),
            Disarm(Timer.BACKUP),
            SendOrder("logout"),
            Arm(Timer.STOP_BOUND, seconds=10),
        ],
    ),
    (
        "logout when not connected",
        at(Phase.HALTED),
        CommandReceived("c5", CommandAction.LOGOUT),
        Phase.HALTED,
        S.CONNECTING,
        [FinishCommand("c5", False, "not connected: nothing to log out")],
    ),
    (
        "busy: a second command while restoring waits",
        at(Phase.RESTORING, pending_command="c1"),
        CommandReceived("c6", CommandAction.WIPE),
        Phase.RESTORING,
        S.CONNECTING,
        [],
    ),
    (
        "busy with a full queue: refused",
        at(
            Phase.ENSURING,
            deferred=tuple(CommandReceived(f"q{i}", CommandAction.RECONNECT) for i in range(8)),
        ),
        CommandReceived("c6", CommandAction.WIPE),
        Phase.ENSURING,
        S.CONNECTING,
        [FinishCommand("c6", False, "busy (ensuring) with commands queued; try again")],
    ),
    (
        "release while connected: stop (the final backup follows the stop)",
        at(Phase.CONNECTED, status=S.CONNECTED),
        CommandReceived("c7", CommandAction.RELEASE),
        Phase.STOPPING,
        S.CONNECTED,
        [FinishCommand("c7", True, "released"), *STOPPING],
    ),
    # --- shutdown
    (
        "stop while connected: the worker first",
        at(Phase.CONNECTED, status=S.CONNECTED),
        StopRequested(),
        Phase.STOPPING,
        S.CONNECTED,
        STOPPING,
    ),
    (
        "stopped after a connected release: final backup of its last state, unattended, forgotten",
        at(Phase.STOPPING, status=S.CONNECTED, after_stop=AfterStop.RELEASE, final_backup=True),
        WorkerExited("exit 0"),
        Phase.IDLE,
        S.UNATTENDED,
        [
            Disarm(Timer.STOP_BOUND),
            Backup(True, final=True),
            SetStatus(S.UNATTENDED, RELEASED_REASON),
            Stopped(),
        ],
    ),
    (
        "stop while backing off: nothing to stop",
        at(Phase.BACKOFF),
        StopRequested(),
        Phase.IDLE,
        S.UNATTENDED,
        [SetStatus(S.UNATTENDED, RELEASED_REASON), Stopped()],
    ),
    (
        "stop when idle",
        at(Phase.IDLE),
        StopRequested(),
        Phase.IDLE,
        S.UNATTENDED,
        [SetStatus(S.UNATTENDED, RELEASED_REASON), Stopped()],
    ),
    (
        "stop whose lease release shows unattended: the machine writes no status",
        at(Phase.BACKOFF),
        StopRequested(show_released=False),
        Phase.IDLE,
        S.UNATTENDED,
        [Stopped()],
    ),
    (
        "stopped after such a connected release: the final backup, no status",
        at(
            Phase.STOPPING,
            status=S.CONNECTED,
            after_stop=AfterStop.RELEASE,
            final_backup=True,
            show_released=False,
        ),
        WorkerExited("exit 0"),
        Phase.IDLE,
        S.UNATTENDED,
        [Disarm(Timer.STOP_BOUND), Backup(True, final=True), Stopped()],
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "signal", "phase", "status", "actions"), ROWS, ids=[r[0] for r in ROWS]
)
def test_transition(  # noqa: PLR0917 - one parameter per table column
    case: str, state: AccountState, signal: Signal, phase: Phase, status: S, actions: list[Action]
) -> None:
    new_state, got = step(state, signal, CFG)
    assert new_state.phase is phase, case
    assert new_state.status is status, case
    assert got == actions, case


def test_no_backup_is_ever_ordered_after_a_logout() -> None:
    state = at(Phase.CONNECTED)
    state, actions = step(state, Report(wp.LoggedOut(account=A, reason_code=401, on_connect=False)), CFG)
    for signal in (WorkerExited("exit 0"), TimerFired(Timer.BACKUP), TimerFired(Timer.RESTART)):
        state, more = step(state, signal, CFG)
        actions += more
    assert not [a for a in actions if isinstance(a, Backup)]
    assert state.phase is Phase.HALTED


def test_backoff_attempts_grow_until_a_stable_connection() -> None:
    state = at(Phase.CONNECTED)
    attempts = []
    for _ in range(3):
        state, _ = step(state, Report(wp.Disconnected(account=A, reason="drop")), CFG)
        state, actions = step(state, WorkerExited("stopped"), CFG)
        attempts += [a.attempt for a in actions if isinstance(a, Arm) and a.timer is Timer.RESTART]
        state, _ = step(state, TimerFired(Timer.RESTART), CFG)
        state, _ = step(state, EnsureDone(jid=JID), CFG)
        state, _ = step(state, Report(wp.Connected(account=A)), CFG)
    assert attempts == [1, 2, 3]
    state, _ = step(state, TimerFired(Timer.BACKUP), CFG)
    assert state.attempt == 0


def test_the_qr_code_never_goes_into_an_event() -> None:
    _, actions = step(at(Phase.STARTING), Report(wp.Qr(account=A, code="2@secret", expires_at=EXPIRY)), CFG)
    assert all("2@secret" not in repr(a) for a in actions if isinstance(a, Emit))


def test_a_command_deferred_while_ensuring_runs_once_the_account_settles() -> None:
    state = at(Phase.ENSURING, jid=None)
    state, actions = step(state, CommandReceived("c1", CommandAction.PAIR), CFG)
    assert actions == [] and len(state.deferred) == 1
    state, actions = step(state, EnsureDone(jid=None), CFG)
    assert state.deferred == ()
    assert FinishCommand("c1", True, "pairing started: a QR code follows") in actions
    assert state.pairing_wanted and state.phase is Phase.BACKOFF
