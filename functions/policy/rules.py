"""The per-event rules: `step(state, event, backups, config) -> (state, intents)`.

Pure and total: every event type has a row family in tests/unit/test_policy_rules.py.
Times are the events' own (`event.at`), never the processing time, so the
same events give the same state whatever order they arrive in (decide.py
re-applies late ones in order). A sweep tick (`event.type` None) applies the
time-driven rules at the sweep's time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from policy.config import PolicyConfig
from policy.model import BackupRef, Due, Intent, MarkGood, Order, PolicyEvent, PolicyState, Strikes
from wa_wire import AccountStatus, CommandAction, EventType

S = AccountStatus
E = EventType
LOGGED_OUT_CODE = 401
STREAM_RESTART_CODE = 515

Step = tuple[PolicyState, list[Intent]]


def newest_good(backups: tuple[BackupRef, ...], below: int | None = None) -> int | None:
    """The newest good generation (older than `below` when given), or None."""
    good = [b.generation for b in backups if b.good and (below is None or b.generation < below)]
    return max(good, default=None)


def stabilize(state: PolicyState, at: datetime, config: PolicyConfig) -> PolicyState:
    """Forget old trouble: strikes past their window, and everything after a stable connection."""
    window = state.strikes.window_started_at
    if window is not None and at - window >= config.strike_window:
        state = replace(state, strikes=Strikes())
    since = state.connected_since
    if state.status is S.CONNECTED and since is not None and at - since >= config.stable_period:
        state = replace(state, strikes=Strikes(), replaced_count=0)
    return state


def step(
    state: PolicyState, event: PolicyEvent, backups: tuple[BackupRef, ...], config: PolicyConfig
) -> Step:
    """Apply one event (or tick) to the state; the intents say what to order or record."""
    state = stabilize(state, event.at, config)
    if event.type is None:
        return _tick(state, event)
    handler = _HANDLERS.get(event.type)
    if handler is None:
        return state, []  # backup_written, lease_*, disk_lost, keepalive_timeout: facts the connector handles
    return handler(state, event, backups, config)


def _set(state: PolicyState, status: AccountStatus, reason: str, **changes: object) -> PolicyState:
    return replace(state, status=status, reason=reason, **changes)  # type: ignore[arg-type]


def _tick(state: PolicyState, tick: PolicyEvent) -> Step:
    due = state.reconnect_due
    if due is None or tick.at < due.at:
        return state, []
    reason = "ban over: reconnecting" if state.status is S.BANNED else "backoff over: reconnecting"
    state = _set(state, S.RECONNECTING, reason, reconnect_due=None, banned_until=None)
    return state, [Order(CommandAction.RECONNECT, reason, due.source)]


def _connected(state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    since = state.connected_since if state.status is S.CONNECTED else event.at
    state = _set(
        state,
        S.CONNECTED,
        "connected",
        connected_since=since,
        restoring=None,
        reconnect_due=None,
        banned_until=None,
    )
    return state, ([] if event.generation is None else [MarkGood(event.generation)])


def _interrupted(state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    restart = event.type is E.STREAM_ERROR and event.reason_code == STREAM_RESTART_CODE
    what = "disconnected" if event.type is E.DISCONNECTED else f"stream error {event.reason_code}"
    state = _set(
        state,
        S.RECONNECTING,
        f"{what}; the connector reconnects",
        connected_since=None,
        stream_restart_at=event.at if restart else state.stream_restart_at,
    )
    return state, []


def is_transient(state: PolicyState, event: PolicyEvent, config: PolicyConfig) -> bool:
    """A 401 soon after a 515 restart: WhatsApp's hiccup, not a real logout."""
    restart = state.stream_restart_at
    if event.reason_code != LOGGED_OUT_CODE or restart is None:
        return False
    return restart <= event.at and event.at - restart <= config.transient_after_restart


def _logged_out(
    state: PolicyState, event: PolicyEvent, backups: tuple[BackupRef, ...], config: PolicyConfig
) -> Step:
    transient = is_transient(state, event, config)
    good = newest_good(backups)
    strikes = state.strikes
    counted = strikes if transient else Strikes(strikes.count + 1, strikes.window_started_at or event.at)
    state = replace(state, connected_since=None, stream_restart_at=None, reconnect_due=None)
    code = event.reason_code
    if good is not None and (transient or strikes.count < config.max_strikes):
        kind = "transient logout after a stream restart" if transient else "logout"
        reason = (
            f"{kind} ({code}); restoring generation {good} (strike {counted.count} of {config.max_strikes})"
        )
        state = _set(state, S.NEEDS_RESTORE, reason, strikes=counted, restoring=good)
        return state, [Order(CommandAction.RESTORE, reason, event.event_id, good)]
    why = "no good backup" if good is None else f"{strikes.count} strikes in the window"
    reason = f"logged out ({code}) and {why}: wiping; pair again"
    state = _set(state, S.NEEDS_QR, reason, strikes=counted, restoring=None)
    return state, [Order(CommandAction.WIPE, reason, event.event_id)]


def _replaced(
    state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], config: PolicyConfig
) -> Step:
    """Split-brain alarm (a stale epoch's was dropped before): back off, retry K times, then stop."""
    state = replace(state, connected_since=None)
    count = state.replaced_count
    if count >= config.max_replaced_reconnects:
        reason = f"replaced {count + 1} times: another client uses this session; pair again or release it"
        return _set(state, S.REPLACED, reason, reconnect_due=None, replaced_count=count + 1), []
    wait = config.replaced_backoff * (2**count)
    reason = f"another connection took over; reconnecting in {int(wait.total_seconds())} s ({count + 1} of {config.max_replaced_reconnects})"
    due = Due(event.at + wait, event.event_id)
    return _set(state, S.RECONNECTING, reason, reconnect_due=due, replaced_count=count + 1), []


def _banned(state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], config: PolicyConfig) -> Step:
    until = event.ban_until or event.at + config.ban_default
    reason = f"temporarily banned ({event.reason_code}) until {until.isoformat()}"
    due = Due(until + config.ban_grace, event.event_id)
    return _set(state, S.BANNED, reason, banned_until=until, reconnect_due=due, connected_since=None), []


def _outdated(state: PolicyState, _e: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    return _set(
        state, S.ERROR, "WhatsApp says this client is outdated: upgrade neonize", connected_since=None
    ), []


def _pairing(state: PolicyState, _e: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    return _set(state, S.PAIRING, "scan the QR code", connected_since=None), []


def _fresh(state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    """paired: a new device, so old strikes and replacements no longer apply."""
    return PolicyState(
        status=S.CONNECTING, reason="paired; connecting", stream_restart_at=state.stream_restart_at
    ), []


def _no_session(state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    if event.type is E.WIPED:
        return PolicyState(status=S.NEEDS_QR, reason="wiped: pair again"), []
    reason = "no session on disk and no usable backup: pair again"
    return _set(state, S.NEEDS_QR, reason, restoring=None, connected_since=None), []


def _restored(state: PolicyState, event: PolicyEvent, _b: tuple[BackupRef, ...], _c: PolicyConfig) -> Step:
    reason = f"restored generation {event.generation}; connecting"
    return _set(state, S.CONNECTING, reason, restoring=None, connected_since=None), []


def _restore_failed(
    state: PolicyState, event: PolicyEvent, backups: tuple[BackupRef, ...], _c: PolicyConfig
) -> Step:
    """Only the generation the policy ordered matters; the connector's own fallback reports the rest."""
    failed = state.restoring
    if failed is None or event.generation != failed:
        return state, []
    older = newest_good(backups, below=failed)
    if older is not None:
        reason = f"restoring generation {failed} failed; trying generation {older}"
        state = _set(state, S.NEEDS_RESTORE, reason, restoring=older)
        return state, [Order(CommandAction.RESTORE, reason, event.event_id, older)]
    reason = f"restoring generation {failed} failed and no older good backup: wiping; pair again"
    state = _set(state, S.NEEDS_QR, reason, restoring=None)
    return state, [Order(CommandAction.WIPE, reason, event.event_id)]


def moves_state(event_type: EventType) -> bool:
    """Whether events of this type change the state; the others are facts (backup_written, lease_*…).

    Only these make an older event late: a backup written a moment after a
    logout, delivered first, must not cancel the restore the logout orders.
    """
    return event_type in _HANDLERS


_HANDLERS = {
    E.CONNECTED: _connected,
    E.DISCONNECTED: _interrupted,
    E.STREAM_ERROR: _interrupted,
    E.LOGGED_OUT: _logged_out,
    E.STREAM_REPLACED: _replaced,
    E.TEMPORARY_BAN: _banned,
    E.CLIENT_OUTDATED: _outdated,
    E.PAIRING: _pairing,
    E.PAIRED: _fresh,
    E.SESSION_MISSING: _no_session,
    E.WIPED: _no_session,
    E.RESTORED: _restored,
    E.RESTORE_FAILED: _restore_failed,
}
