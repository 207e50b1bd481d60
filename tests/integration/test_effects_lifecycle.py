"""The lifecycle effects in-process against the Firestore emulator: dedupe, order, epochs, commands."""

from __future__ import annotations

import base64
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from connector.adapters.firestore_commands import to_pending
from control import effects, lifecycle
from policy import Outcome, PolicyConfig
from wa_wire import AccountStatus, CommandAction, EventType, LifecycleEvent, command_id_for, to_json

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = PolicyConfig()
VISIBLE = ("policy", "strikes", "status", "status_reason", "last_event")


def event(
    account: str, kind: EventType, seconds: float, code: int | None = None, **kw: Any
) -> LifecycleEvent:
    return LifecycleEvent.new(
        kind,
        account_id=account,
        connector_id="conn-a",
        lease_epoch=kw.pop("epoch", 2),
        at=T0 + timedelta(seconds=seconds),
        reason_code=code,
        **kw,
    )


def seed(db: firestore.Client, account: str, epoch: int = 2, good: tuple[int, ...] = (3, 4)) -> None:
    db.document(f"leases/{account}").set({"holder": "conn-a", "epoch": epoch})
    for generation in (*good, 9):
        db.document(f"accounts/{account}/backups/{generation}").set(
            {"generation": generation, "good": generation in good}
        )
    db.document(f"accounts/{account}").set({"owners": ["uid-1"], "backup": {"generation": 9, "good": False}})


def apply(db: firestore.Client, evt: LifecycleEvent) -> Outcome:
    return effects.apply_lifecycle_event(db, evt, NOW, CFG)


def doc(db: firestore.Client, path: str) -> dict[str, Any]:
    return db.document(path).get().to_dict() or {}


def commands(db: firestore.Client) -> dict[str, dict[str, Any]]:
    return {snap.id: snap.to_dict() or {} for snap in db.collection("commands").stream()}


def test_a_logout_restores_the_newest_good_generation(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-a")
    logout = event("acct-a", EventType.LOGGED_OUT, 10, code=401)
    assert apply(db, logout) is Outcome.APPLIED
    account = doc(db, "accounts/acct-a")
    assert account["status"] == AccountStatus.NEEDS_RESTORE.value
    assert account["strikes"]["count"] == 1
    assert account["last_event"] == {"type": "logged_out", "reason_code": 401, "at": logout.at}
    cid = command_id_for(logout.event_id, CommandAction.RESTORE)
    stored = commands(db)
    assert list(stored) == [cid]
    pending = to_pending(cid, stored[cid])  # exactly what the connector's inbox reads
    assert pending is not None and pending.generation == 4 and pending.account_id == "acct-a"
    assert doc(db, f"processed_events/{logout.event_id}")["outcome"] == "applied"


def test_a_real_logout_is_retried_max_strikes_times_then_wiped(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-b")
    actions = []
    for i in range(3):
        logout = event("acct-b", EventType.LOGGED_OUT, 10 + i * 20, code=401)
        apply(db, logout)
        actions += [c["action"] for c in commands(db).values() if c["source_event_id"] == logout.event_id]
    assert actions == ["restore", "restore", "wipe"]
    assert doc(db, "accounts/acct-b")["status"] == AccountStatus.NEEDS_QR.value


def test_a_401_right_after_a_515_is_transient(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-t")
    for i in range(2):
        apply(db, event("acct-t", EventType.LOGGED_OUT, i, code=401))
    apply(db, event("acct-t", EventType.STREAM_ERROR, 100, code=515))
    transient = event("acct-t", EventType.LOGGED_OUT, 130, code=401)
    apply(db, transient)
    assert commands(db)[command_id_for(transient.event_id, CommandAction.RESTORE)]["params"] == {
        "generation": 4
    }
    assert doc(db, "accounts/acct-t")["strikes"]["count"] == 2


def test_the_same_event_twice_changes_the_account_once(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-d")
    logout = event("acct-d", EventType.LOGGED_OUT, 10, code=401)
    apply(db, logout)
    first = db.document("accounts/acct-d").get()
    assert apply(db, logout) is Outcome.DUPLICATE
    again = db.document("accounts/acct-d").get()
    assert again.update_time == first.update_time and again.to_dict() == first.to_dict()
    assert doc(db, f"processed_events/{logout.event_id}")["deliveries"] == 2
    assert len(commands(db)) == 1


def test_a_lost_dedupe_record_still_creates_no_second_command(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-r")
    logout = event("acct-r", EventType.LOGGED_OUT, 10, code=401)
    apply(db, logout)
    before = commands(db)
    db.document(f"processed_events/{logout.event_id}").delete()
    assert apply(db, logout) is Outcome.DUPLICATE  # the account's journal knows it too
    assert commands(db) == before


HISTORY = [
    (EventType.CONNECTED, 0, None, 3),
    (EventType.STREAM_ERROR, 100, 515, None),
    (EventType.LOGGED_OUT, 130, 401, None),
    (EventType.CONNECTED, 150, None, 4),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_out_of_order_delivery_gives_the_same_account(
    clean_firestore: firestore.Client, order: tuple[int, ...]
) -> None:
    db = clean_firestore
    finals: list[dict[str, Any]] = []
    for run, arrival in enumerate([(0, 1, 2, 3), order]):
        account = f"acct-o{run}"
        seed(db, account)
        events = [event(account, k, s, code=c, session_generation=g) for k, s, c, g in HISTORY]
        for i in arrival:
            apply(db, events[i])
        data = doc(db, f"accounts/{account}")
        journal = data["policy"]["journal"]
        for entry in journal:
            entry.pop("id")  # ids differ between the two accounts, nothing else may
        finals.append({k: data.get(k) for k in VISIBLE})
    assert finals[0] == finals[1]
    assert finals[0]["status"] == "connected" and finals[0]["strikes"]["count"] == 0


@pytest.mark.parametrize("kind", [EventType.STREAM_REPLACED, EventType.LOGGED_OUT, EventType.CONNECTED])
def test_a_stale_epoch_changes_nothing(clean_firestore: firestore.Client, kind: EventType) -> None:
    db = clean_firestore
    seed(db, "acct-s", epoch=3)
    before = db.document("accounts/acct-s").get()
    stale = event("acct-s", kind, 10, code=401, epoch=2, session_generation=9)
    assert apply(db, stale) is Outcome.STALE_EPOCH
    after = db.document("accounts/acct-s").get()
    assert after.update_time == before.update_time
    assert doc(db, "accounts/acct-s/backups/9")["good"] is False
    assert commands(db) == {}
    assert doc(db, f"processed_events/{stale.event_id}")["outcome"] == "stale_epoch"


def test_connected_marks_the_generation_good(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-g")
    apply(db, event("acct-g", EventType.CONNECTED, 10, session_generation=9))
    assert doc(db, "accounts/acct-g/backups/9")["good"] is True
    assert doc(db, "accounts/acct-g")["backup"] == {"generation": 9, "good": True}


def test_connected_from_a_deleted_generation_creates_no_manifest(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    seed(db, "acct-x")
    apply(db, event("acct-x", EventType.CONNECTED, 10, session_generation=42))
    assert not db.document("accounts/acct-x/backups/42").get().exists


def test_an_unreadable_policy_record_is_replaced_not_fatal(
    clean_firestore: firestore.Client, caplog: pytest.LogCaptureFixture
) -> None:
    db = clean_firestore
    seed(db, "acct-c")
    db.document("accounts/acct-c").update({"policy": {"journal": "garbage"}})
    with caplog.at_level(logging.ERROR):
        assert apply(db, event("acct-c", EventType.LOGGED_OUT, 10, code=401)) is Outcome.APPLIED
    assert "policy record" in caplog.text
    assert doc(db, "accounts/acct-c")["status"] == AccountStatus.NEEDS_RESTORE.value


@pytest.mark.parametrize(
    "data",
    [
        b"%%% not base64",
        base64.b64encode(b"not json"),
        base64.b64encode(b'{"type": "connected"}'),
        base64.b64encode(to_json(event("a/b", EventType.CONNECTED, 0)).encode()),
        base64.b64encode(to_json(event("__x__", EventType.CONNECTED, 0)).encode()),
    ],
)
def test_malformed_messages_are_dropped_whole(clean_firestore: firestore.Client, data: bytes) -> None:
    assert lifecycle.handle_message(data.decode(), "msg-1", NOW) is None
    assert list(clean_firestore.collection("accounts").list_documents()) == []
    assert list(clean_firestore.collection("processed_events").stream()) == []


def test_a_good_message_goes_through_the_handler(clean_firestore: firestore.Client) -> None:
    seed(clean_firestore, "acct-h")
    evt = event("acct-h", EventType.SESSION_MISSING, 5)
    data = base64.b64encode(to_json(evt).encode()).decode()
    assert lifecycle.handle_message(data, "msg-2", NOW) is Outcome.APPLIED
    assert doc(clean_firestore, "accounts/acct-h")["status"] == AccountStatus.NEEDS_QR.value


def test_a_fact_is_recorded_without_touching_the_account(clean_firestore: firestore.Client) -> None:
    seed(clean_firestore, "acct-1")
    before = doc(clean_firestore, "accounts/acct-1")
    backup = event("acct-1", EventType.BACKUP_WRITTEN, 10, session_generation=9)
    assert apply(clean_firestore, backup) is Outcome.FACT
    assert apply(clean_firestore, backup) is Outcome.DUPLICATE
    record = doc(clean_firestore, f"processed_events/{backup.event_id}")
    assert (record["outcome"], record["type"], record["deliveries"]) == ("fact", "backup_written", 2)
    assert doc(clean_firestore, "accounts/acct-1") == before


def test_a_newer_fact_does_not_cancel_a_logouts_restore(clean_firestore: firestore.Client) -> None:
    """The backup that finished just after the 401 was delivered first: the restore is still ordered."""
    seed(clean_firestore, "acct-1")
    apply(clean_firestore, event("acct-1", EventType.CONNECTED, 0, session_generation=4))
    apply(clean_firestore, event("acct-1", EventType.BACKUP_WRITTEN, 101, session_generation=9))
    logout = event("acct-1", EventType.LOGGED_OUT, 100, code=401)
    assert apply(clean_firestore, logout) is Outcome.APPLIED
    restore = commands(clean_firestore)[command_id_for(logout.event_id, CommandAction.RESTORE)]
    assert restore["params"] == {"generation": 4}


def test_events_of_one_account_applied_at_the_same_time_are_all_kept(
    clean_firestore: firestore.Client,
) -> None:
    """A logout, the restore it ordered and a second logout arrive together (the connector
    emits them within milliseconds): each is applied once, none is lost to contention, and
    the account ends as the events in their own order say (a second restore ordered)."""
    db = clean_firestore
    seed(db, "acct-c")
    events = [
        event("acct-c", EventType.LOGGED_OUT, 10, code=401),
        event("acct-c", EventType.RESTORED, 11, session_generation=4),
        event("acct-c", EventType.LOGGED_OUT, 12, code=401),
    ]
    with ThreadPoolExecutor(len(events)) as pool:
        outcomes = list(
            pool.map(
                lambda e: lifecycle.CONTENTION_RETRY(effects.apply_lifecycle_event)(db, e, NOW, CFG), events
            )
        )
    assert set(outcomes) <= {Outcome.APPLIED, Outcome.LATE}
    for evt in events:
        assert doc(db, f"processed_events/{evt.event_id}")["deliveries"] == 1
    data = doc(db, "accounts/acct-c")
    assert data["status"] == "needs_restore"
    assert data["strikes"]["count"] == 2
    assert len(data["policy"]["journal"]) == len(events)
