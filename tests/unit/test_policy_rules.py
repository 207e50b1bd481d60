"""Every policy rule as a row: prior state, event, backups -> state fields and intents."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from policy import BackupRef, MarkGood, Order, PolicyConfig, PolicyEvent, PolicyState, Strikes
from policy.model import Due, Intent
from policy.rules import step
from wa_wire import AccountStatus, EventType

S = AccountStatus
E = EventType
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = PolicyConfig()
GOOD = (BackupRef(3, True), BackupRef(4, True), BackupRef(5, False))
"""Newest good generation 4; generation 5 not (yet) confirmed."""


def sec(n: float) -> timedelta:
    return timedelta(seconds=n)


def ev(
    kind: EventType | None, at: timedelta = timedelta(0), code: int | None = None, **kw: object
) -> PolicyEvent:
    return PolicyEvent(event_id="ev-1", type=kind, at=T0 + at, reason_code=code, **kw)  # type: ignore[arg-type]


CONNECTED_LONG = PolicyState(status=S.CONNECTED, connected_since=T0 - timedelta(minutes=11))
STRUCK_TWICE = PolicyState(status=S.CONNECTING, strikes=Strikes(2, T0 - timedelta(minutes=3)))
AFTER_515 = replace(STRUCK_TWICE, status=S.RECONNECTING, stream_restart_at=T0 - sec(30))


@dataclass(frozen=True)
class Row:
    name: str
    state: PolicyState
    event: PolicyEvent
    expect: dict[str, object]
    intents: list[tuple[str, object]] = field(default_factory=list)
    backups: tuple[BackupRef, ...] = GOOD


def summary(intents: list[Intent]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for intent in intents:
        if isinstance(intent, MarkGood):
            out.append(("good", intent.generation))
        elif intent.generation is not None:
            out.append((intent.action.value, intent.generation))
        else:
            out.append((intent.action.value, intent.source))
    return out


ROWS = [
    # -- logout policy ---------------------------------------------------------------------
    Row("logout, good backup, no strikes -> restore newest good", PolicyState(), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_RESTORE, "strikes": Strikes(1, T0), "restoring": 4}, [("restore", 4)]),
    Row("logout, one strike in window -> restore, second strike",
        PolicyState(strikes=Strikes(1, T0 - sec(60))), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_RESTORE, "strikes": Strikes(2, T0 - sec(60))}, [("restore", 4)]),
    Row("logout, MAX_STRIKES in window -> wipe, needs_qr", STRUCK_TWICE, ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_QR, "strikes": Strikes(3, T0 - timedelta(minutes=3)), "restoring": None},
        [("wipe", "ev-1")]),
    Row("logout, strikes from an expired window -> restore, window restarts",
        replace(STRUCK_TWICE, strikes=Strikes(2, T0 - timedelta(minutes=10))), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_RESTORE, "strikes": Strikes(1, T0)}, [("restore", 4)]),
    Row("logout, no backup -> wipe", PolicyState(), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_QR, "strikes": Strikes(1, T0)}, [("wipe", "ev-1")], ()),
    Row("logout, only unconfirmed backups -> wipe", PolicyState(), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_QR}, [("wipe", "ev-1")], (BackupRef(7, False),)),
    Row("bad-session code (500) is a logout like any other", PolicyState(), ev(E.LOGGED_OUT, code=500),
        {"status": S.NEEDS_RESTORE}, [("restore", 4)]),
    Row("401 within 60 s of a 515 is transient: restore, no strike", AFTER_515, ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_RESTORE, "strikes": STRUCK_TWICE.strikes, "stream_restart_at": None},
        [("restore", 4)]),
    Row("401 exactly 60 s after a 515 is still transient",
        replace(AFTER_515, stream_restart_at=T0 - sec(60)), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_RESTORE, "strikes": STRUCK_TWICE.strikes}, [("restore", 4)]),
    Row("401 61 s after a 515 is a real logout", replace(AFTER_515, stream_restart_at=T0 - sec(61)),
        ev(E.LOGGED_OUT, code=401), {"status": S.NEEDS_QR}, [("wipe", "ev-1")]),
    Row("403 after a 515 is not the transient case", AFTER_515, ev(E.LOGGED_OUT, code=403),
        {"status": S.NEEDS_QR}, [("wipe", "ev-1")]),
    Row("a 515 after the 401 does not make it transient", replace(AFTER_515, stream_restart_at=T0 + sec(5)),
        ev(E.LOGGED_OUT, code=401), {"status": S.NEEDS_QR}, [("wipe", "ev-1")]),
    Row("transient logout without a good backup -> wipe", AFTER_515, ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_QR}, [("wipe", "ev-1")], ()),
    Row("stable connection (10 min) cleared the strikes -> restore", replace(CONNECTED_LONG,
        strikes=Strikes(2, T0 - timedelta(minutes=9))), ev(E.LOGGED_OUT, code=401),
        {"status": S.NEEDS_RESTORE, "strikes": Strikes(1, T0), "connected_since": None}, [("restore", 4)]),
    Row("connected under 10 min keeps the strikes -> wipe",
        PolicyState(status=S.CONNECTED, connected_since=T0 - timedelta(minutes=9),
                    strikes=Strikes(2, T0 - timedelta(minutes=9))),
        ev(E.LOGGED_OUT, code=401), {"status": S.NEEDS_QR}, [("wipe", "ev-1")]),
    # -- connected, interruptions -----------------------------------------------------------
    Row("connected marks its generation good", PolicyState(status=S.CONNECTING, restoring=4),
        ev(E.CONNECTED, generation=4), {"status": S.CONNECTED, "connected_since": T0, "restoring": None},
        [("good", 4)]),
    Row("connected without a generation marks nothing", PolicyState(), ev(E.CONNECTED),
        {"status": S.CONNECTED}, []),
    Row("connected again keeps the stable period's start", CONNECTED_LONG, ev(E.CONNECTED),
        {"connected_since": CONNECTED_LONG.connected_since}, []),
    Row("connected clears a pending ban reconnect",
        PolicyState(status=S.BANNED, banned_until=T0, reconnect_due=Due(T0, "ban")), ev(E.CONNECTED),
        {"status": S.CONNECTED, "reconnect_due": None, "banned_until": None}, []),
    Row("disconnected -> reconnecting, stability lost", CONNECTED_LONG.__class__(status=S.CONNECTED,
        connected_since=T0 - sec(5)), ev(E.DISCONNECTED), {"status": S.RECONNECTING, "connected_since": None}),
    Row("515 stream error remembers the restart", PolicyState(), ev(E.STREAM_ERROR, code=515),
        {"status": S.RECONNECTING, "stream_restart_at": T0}),
    Row("other stream errors do not", PolicyState(stream_restart_at=T0 - sec(1)),
        ev(E.STREAM_ERROR, code=503), {"status": S.RECONNECTING, "stream_restart_at": T0 - sec(1)}),
    # -- stream_replaced (stale epochs are dropped before the rules: test_policy_decide) --------------
    Row("first stream_replaced -> back off 30 s", PolicyState(status=S.CONNECTED),
        ev(E.STREAM_REPLACED), {"status": S.RECONNECTING, "replaced_count": 1,
                                "reconnect_due": Due(T0 + sec(30), "ev-1")}),
    Row("third stream_replaced -> back off 120 s", PolicyState(replaced_count=2), ev(E.STREAM_REPLACED),
        {"status": S.RECONNECTING, "replaced_count": 3, "reconnect_due": Due(T0 + sec(120), "ev-1")}),
    Row("after K reconnects -> replaced, no more", PolicyState(replaced_count=3), ev(E.STREAM_REPLACED),
        {"status": S.REPLACED, "replaced_count": 4, "reconnect_due": None}),
    Row("a stable connection resets the replaced count", replace(CONNECTED_LONG, replaced_count=3),
        ev(E.STREAM_REPLACED), {"status": S.RECONNECTING, "replaced_count": 1}),
    # -- bans ---------------------------------------------------------------------------------
    Row("temporary ban until its expiry", PolicyState(status=S.CONNECTED),
        ev(E.TEMPORARY_BAN, code=101, ban_until=T0 + timedelta(hours=2)),
        {"status": S.BANNED, "banned_until": T0 + timedelta(hours=2),
         "reconnect_due": Due(T0 + timedelta(hours=2, minutes=2), "ev-1")}),
    Row("temporary ban without an expiry lasts ban_default", PolicyState(), ev(E.TEMPORARY_BAN, code=101),
        {"status": S.BANNED, "banned_until": T0 + timedelta(hours=1)}),
    # -- pairing, sessions, restores --------------------------------------------------------------
    Row("client outdated -> error", PolicyState(status=S.CONNECTED), ev(E.CLIENT_OUTDATED, code=405),
        {"status": S.ERROR}),
    Row("pairing -> pairing", PolicyState(), ev(E.PAIRING), {"status": S.PAIRING}),
    Row("paired: a new device starts clean", replace(STRUCK_TWICE, replaced_count=2), ev(E.PAIRED),
        {"status": S.CONNECTING, "strikes": Strikes(), "replaced_count": 0}),
    Row("session_missing -> needs_qr", PolicyState(status=S.CONNECTING), ev(E.SESSION_MISSING),
        {"status": S.NEEDS_QR}),
    Row("wiped -> needs_qr, history cleared", STRUCK_TWICE, ev(E.WIPED),
        {"status": S.NEEDS_QR, "strikes": Strikes()}),
    Row("restored -> connecting", PolicyState(status=S.NEEDS_RESTORE, restoring=4),
        ev(E.RESTORED, generation=4), {"status": S.CONNECTING, "restoring": None}),
    Row("ordered restore failed -> the next older good generation",
        PolicyState(status=S.NEEDS_RESTORE, restoring=4), ev(E.RESTORE_FAILED, generation=4),
        {"status": S.NEEDS_RESTORE, "restoring": 3}, [("restore", 3)]),
    Row("ordered restore failed, nothing older -> wipe",
        PolicyState(status=S.NEEDS_RESTORE, restoring=3), ev(E.RESTORE_FAILED, generation=3),
        {"status": S.NEEDS_QR, "restoring": None}, [("wipe", "ev-1")]),
    Row("the connector's own fallback failures change nothing",
        PolicyState(status=S.NEEDS_RESTORE, restoring=4), ev(E.RESTORE_FAILED, generation=5),
        {"status": S.NEEDS_RESTORE, "restoring": 4}),
    Row("restore_failed without a policy restore changes nothing", PolicyState(status=S.CONNECTING),
        ev(E.RESTORE_FAILED, generation=4), {"status": S.CONNECTING, "restoring": None}),
    # -- facts the connector handles alone --------------------------------------------------------
    *[
        Row(f"{kind.value} changes nothing", CONNECTED_LONG.__class__(status=S.CONNECTED, connected_since=T0),
            ev(kind), {"status": S.CONNECTED, "connected_since": T0})
        for kind in (E.BACKUP_WRITTEN, E.LEASE_ACQUIRED, E.LEASE_LOST, E.DISK_LOST, E.KEEPALIVE_TIMEOUT)
    ],
    # -- the sweep's tick ---------------------------------------------------------------------------
    Row("tick before the backoff is over: nothing", PolicyState(status=S.RECONNECTING,
        reconnect_due=Due(T0 + sec(1), "rep")), ev(None), {"reconnect_due": Due(T0 + sec(1), "rep")}),
    Row("tick after the backoff: reconnect", PolicyState(status=S.RECONNECTING,
        reconnect_due=Due(T0, "rep")), ev(None), {"status": S.RECONNECTING, "reconnect_due": None},
        [("reconnect", "rep")]),
    Row("tick after ban expiry + grace: reconnect", PolicyState(status=S.BANNED, banned_until=T0 - sec(120),
        reconnect_due=Due(T0, "ban")), ev(None), {"status": S.RECONNECTING, "banned_until": None},
        [("reconnect", "ban")]),
    Row("tick: 10 min connected resets strikes", replace(CONNECTED_LONG, strikes=Strikes(1, T0 - sec(1))),
        ev(None), {"strikes": Strikes(), "status": S.CONNECTED}),
    Row("tick: an expired strike window resets strikes",
        PolicyState(status=S.NEEDS_QR, strikes=Strikes(2, T0 - timedelta(minutes=10))), ev(None),
        {"strikes": Strikes(), "status": S.NEEDS_QR}),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_rule(row: Row) -> None:
    state, intents = step(row.state, row.event, row.backups, CFG)
    assert {name: getattr(state, name) for name in row.expect} == row.expect
    assert summary(intents) == row.intents


def test_every_event_type_has_a_row() -> None:
    assert {r.event.type for r in ROWS} >= set(EventType)


def test_orders_carry_their_source_event_and_a_reason() -> None:
    _, intents = step(PolicyState(), ev(E.LOGGED_OUT, code=401), GOOD, CFG)
    (order,) = intents
    assert isinstance(order, Order)
    assert (order.source, order.params()) == ("ev-1", {"generation": 4})
    assert "401" in order.reason and "generation 4" in order.reason


def test_thresholds_come_from_the_config() -> None:
    strict = PolicyConfig(max_strikes=0, transient_after_restart=timedelta(0))
    _, intents = step(PolicyState(), ev(E.LOGGED_OUT, code=401), GOOD, strict)
    assert summary(intents) == [("wipe", "ev-1")]
    lenient = PolicyConfig(max_strikes=5)
    _, intents = step(STRUCK_TWICE, ev(E.LOGGED_OUT, code=401), GOOD, lenient)
    assert summary(intents) == [("restore", 4)]
