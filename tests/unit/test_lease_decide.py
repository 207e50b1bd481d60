"""The elector's pure decision, by table; and LeaseConfig's validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from connector.lease import Action, LeaseConfig, Local, decide, free_from
from connector.lease_record import LeaseError, LeaseRecord, LeaseView

ME = "conn-a"
OTHER = "conn-b"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the store's clock
CONFIG = LeaseConfig()  # 15 s TTL, deadline 10, retry 2, renew every 5


def record(
    holder: str | None = OTHER, epoch: int = 1, renewed_s: float = 0.0, ttl_ms: int = 15_000
) -> LeaseRecord:
    at = T0 + timedelta(seconds=renewed_s)
    return LeaseRecord("acct", holder, epoch, ttl_ms, at, T0, 0)


def seen(
    rec: LeaseRecord | None,
    server_s: float | None = 0.0,
    read: float = 0.0,
    seen_at: float | None = None,
    *,
    held_epoch: int | None = None,
    renewed_mono: float = 0.0,
    failed_mono: float | None = None,
) -> Local:
    """Local knowledge: `rec` read at local time `read`, the server then at T0 + server_s."""
    server_now = None if server_s is None else T0 + timedelta(seconds=server_s)
    return Local(
        view=LeaseView("acct", rec, server_now),
        read_mono=read,
        seen_mono=read if seen_at is None else seen_at,
        held_epoch=held_epoch,
        renewed_mono=renewed_mono,
        failed_mono=failed_mono,
    )


def held(epoch: int = 1, renewed: float = 0.0, failed_mono: float | None = None) -> Local:
    return seen(record(ME, epoch), held_epoch=epoch, renewed_mono=renewed, failed_mono=failed_mono)


@dataclass(frozen=True)
class Row:
    name: str
    local: Local
    claim: float | None
    now: float
    action: Action
    at: float | None = None  # checked for WAIT


ROWS = [
    # ---- a lease we hold
    Row("held: renew not due yet", held(), 0.0, 1.0, Action.WAIT, 5.0),
    Row("held: renew due at ttl/3", held(), 0.0, 5.0, Action.RENEW),
    Row("held: not claimed any more still renews (release is explicit)", held(), None, 5.0, Action.RENEW),
    Row(
        "held: after a failure, retry after the retry period",
        held(failed_mono=5.0),
        0.0,
        6.0,
        Action.WAIT,
        7.0,
    ),
    Row("held: retry due", held(failed_mono=5.0), 0.0, 7.0, Action.RENEW),
    Row("held: a late retry is capped by the deadline", held(failed_mono=9.0), 0.0, 9.5, Action.WAIT, 10.0),
    Row("held: deadline reached", held(), 0.0, 10.0, Action.DEADLINE_MISSED),
    Row("held: deadline long past", held(renewed=3.0), 0.0, 40.0, Action.DEADLINE_MISSED),
    Row("held: another holder in the store", seen(record(OTHER), held_epoch=1), 0.0, 1.0, Action.LOST),
    Row("held: a newer epoch of ours in the store", seen(record(ME, 2), held_epoch=1), 0.0, 1.0, Action.LOST),
    Row("held: the lease document is gone", seen(None, held_epoch=1), 0.0, 1.0, Action.LOST),
    Row("held: released in the store", seen(record(None), held_epoch=1), 0.0, 1.0, Action.LOST),
    # ---- not held, not claimed
    Row("not claimed: nothing to do", seen(None), None, 1.0, Action.WAIT, math.inf),
    Row("not claimed, held by another: nothing to do", seen(record()), None, 100.0, Action.WAIT, math.inf),
    # ---- not held, claimed
    Row("never read: read", Local(), 0.0, 0.0, Action.READ),
    Row("never read, read failed: wait the retry period", Local(failed_mono=1.0), 0.0, 2.0, Action.WAIT, 3.0),
    Row("missing: take it", seen(None), 0.0, 0.5, Action.ACQUIRE),
    Row("released: take it", seen(record(None)), 0.0, 0.5, Action.ACQUIRE),
    Row("our own from before a restart: take it", seen(record(ME)), 0.0, 0.5, Action.ACQUIRE),
    Row("missing, head start 3 s: wait", seen(None, read=10.0), 3.0, 12.0, Action.WAIT, 13.0),
    Row("missing, head start over: take it", seen(None, read=10.0), 3.0, 13.0, Action.ACQUIRE),
    Row("fresh lease of another: poll at the retry period", seen(record()), 0.0, 1.0, Action.WAIT, 2.0),
    Row("fresh lease of another: poll due", seen(record()), 0.0, 2.0, Action.READ),
    Row("another's, head start: poll every ttl/3", seen(record()), 3.0, 1.0, Action.WAIT, 5.0),
    Row("server age 14 of 15 s: expires 1 s after the read", seen(record(), 14.0), 0.0, 1.0, Action.ACQUIRE),
    Row("server age 14, just before", seen(record(), 14.0), 0.0, 0.9, Action.WAIT, 1.0),
    Row("server age 14, head start 3 s", seen(record(), 14.0), 3.0, 3.5, Action.WAIT, 4.0),
    Row("server age 14, head start over", seen(record(), 14.0), 3.0, 4.0, Action.ACQUIRE),
    Row("the record's own TTL counts, not ours", seen(record(ttl_ms=60_000), 14.0), 0.0, 20.0, Action.READ),
    Row("the record's own TTL counts: 60 s", seen(record(ttl_ms=60_000), 14.0), 0.0, 46.0, Action.ACQUIRE),
    Row(
        "no server time: unchanged for a TTL here",
        seen(record(), None, read=14.0, seen_at=0.0),
        0.0,
        15.0,
        Action.ACQUIRE,
    ),
    Row(
        "no server time: not yet", seen(record(), None, read=14.0, seen_at=0.0), 0.0, 14.9, Action.WAIT, 15.0
    ),
    Row(
        "server says fresh but unchanged here for a TTL",
        seen(record(), 0.0, read=14.0, seen_at=0.0),
        0.0,
        15.0,
        Action.ACQUIRE,
    ),
    Row(
        "expired but the last acquire failed: retry later",
        seen(None, failed_mono=20.0),
        0.0,
        21.0,
        Action.WAIT,
        22.0,
    ),
    Row("expired, retry due", seen(None, failed_mono=20.0), 0.0, 22.0, Action.ACQUIRE),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_decide(row: Row) -> None:
    decision = decide(row.local, ME, row.claim, CONFIG, row.now)
    assert decision.action is row.action
    if row.action is Action.WAIT:
        assert decision.at == pytest.approx(row.at)
    else:
        assert decision.at == row.now


def test_free_from_is_unknown_before_the_first_read() -> None:
    assert free_from(Local(), ME) is None


def test_wall_clocks_do_not_enter_the_decision() -> None:
    """Only store times and monotonic times: moving every store stamp by hours changes nothing."""
    for shift in (timedelta(hours=-3), timedelta(minutes=7), timedelta(days=400)):
        rec = record()
        moved = LeaseRecord("acct", OTHER, 1, 15_000, rec.renewed_at + shift, rec.acquired_at + shift, 0)
        for now in (0.5, 1.0, 14.0, 15.0):
            a = decide(seen(rec, 14.0), ME, 0.0, CONFIG, now)
            b = decide(
                Local(view=LeaseView("acct", moved, T0 + timedelta(seconds=14) + shift)), ME, 0.0, CONFIG, now
            )
            assert a == b


# ---- LeaseConfig


def test_the_default_is_client_go_timing() -> None:
    assert (CONFIG.ttl_s, CONFIG.renew_deadline_s, CONFIG.retry_period_s, CONFIG.renew_interval_s) == (
        15.0,
        10.0,
        2.0,
        5.0,
    )
    assert CONFIG.ttl_ms == 15_000
    assert LeaseConfig.for_ttl(15) == CONFIG
    assert LeaseConfig.for_ttl(30).renew_deadline_s == 20.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_s": 10.0, "renew_deadline_s": 10.0}, "ttl .* > renew deadline"),
        ({"ttl_s": 8.0}, "ttl .* > renew deadline"),
        ({"renew_deadline_s": 2.0, "renew_interval_s": 1.0}, "renew deadline .* > retry period"),
        ({"retry_period_s": 12.0}, "renew deadline .* > retry period"),
        ({"renew_interval_s": 10.0}, "renew interval .* shorter than the renew deadline"),
        ({"retry_period_s": 0.0}, "positive"),
        ({"ttl_s": -1.0}, "positive"),
        ({"ttl_s": math.nan}, "positive"),
        ({"ttl_s": math.inf}, "positive"),
    ],
)
def test_a_bad_config_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(LeaseError, match=message):
        LeaseConfig(**kwargs)
