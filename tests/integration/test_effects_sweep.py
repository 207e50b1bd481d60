"""The sweep in-process against the Firestore emulator: expiry, ticks, unattended, retention, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from control import effects
from control.sweep import run_sweep
from policy import PolicyConfig
from wa_wire import AccountStatus, CommandAction, EventType, LifecycleEvent, command_id_for
from wa_wire.codec import utc_timestamp

NOW = datetime.now(UTC).replace(microsecond=0)
CFG = PolicyConfig()


def doc(db: firestore.Client, path: str) -> dict[str, Any]:
    return db.document(path).get().to_dict() or {}


def live_lease(db: firestore.Client, account: str, renewed_ago: timedelta = timedelta(seconds=3)) -> None:
    db.document(f"leases/{account}").set(
        {"holder": "conn-a", "epoch": 1, "ttl_ms": 15_000, "renewed_at": NOW - renewed_ago}
    )


def command(db: firestore.Client, cid: str, status: str, expires_in: timedelta) -> None:
    db.document(f"commands/{cid}").set(
        {
            "account_id": "acct-1",
            "action": "reconnect",
            "params": {},
            "reason": "test",
            "issued_by": "policy",
            "source_event_id": cid,
            "issued_at": utc_timestamp(NOW - timedelta(hours=1)),
            "expires_at": utc_timestamp(NOW + expires_in),
            "status": status,
            "claimed_by": None,
            "claimed_epoch": None,
            "result": None,
            "finished_at": None,
        }
    )


def test_pending_commands_past_expiry_expire(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    command(db, "old-pending", "pending", -timedelta(seconds=1))
    command(db, "new-pending", "pending", timedelta(minutes=5))
    command(db, "old-claimed", "claimed", -timedelta(minutes=5))
    report = run_sweep(db, NOW, CFG)
    assert report.commands_expired == 1
    expired = doc(db, "commands/old-pending")
    assert expired["status"] == "expired" and expired["finished_at"] == utc_timestamp(NOW)
    assert doc(db, "commands/new-pending")["status"] == "pending"
    assert doc(db, "commands/old-claimed")["status"] == "claimed"


def test_accounts_nobody_holds_become_unattended(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    for account in ("held", "expired", "released", "no-lease", "stopped"):
        db.document(f"accounts/{account}").set({"status": "connected", "owners": []})
    live_lease(db, "held")
    live_lease(db, "expired", renewed_ago=timedelta(seconds=46))
    db.document("leases/released").set({"holder": None, "epoch": 2, "ttl_ms": 15_000, "renewed_at": NOW})
    db.document("accounts/stopped").update({"desired": "stopped"})
    report = run_sweep(db, NOW, CFG)
    statuses = {
        a: doc(db, f"accounts/{a}")["status"] for a in ("held", "expired", "released", "no-lease", "stopped")
    }
    assert statuses == {
        "held": "connected",
        "expired": "unattended",
        "released": "unattended",
        "no-lease": "unattended",
        "stopped": "connected",
    }
    assert (
        doc(db, "accounts/expired")["status_reason"]
        == "no connector holds this account (last status: connected)"
    )
    assert report.accounts_unattended == 3
    again = db.document("accounts/expired").get().update_time
    assert run_sweep(db, NOW, CFG).accounts_unattended == 0
    assert db.document("accounts/expired").get().update_time == again


def test_the_tick_orders_a_reconnect_once_the_backoff_is_over(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    live_lease(db, "acct-r")
    replaced = LifecycleEvent.new(
        EventType.STREAM_REPLACED, account_id="acct-r", connector_id="conn-a", lease_epoch=1, at=NOW
    )
    effects.apply_lifecycle_event(db, replaced, NOW, CFG)
    assert run_sweep(db, NOW + timedelta(seconds=10), CFG).commands_issued == 0
    live_lease(db, "acct-r", renewed_ago=-timedelta(seconds=40))  # still held at the later sweep
    report = run_sweep(db, NOW + timedelta(seconds=40), CFG)
    assert report.commands_issued == 1 and report.accounts_settled == 1
    cid = command_id_for(replaced.event_id, CommandAction.RECONNECT)
    assert doc(db, f"commands/{cid}")["action"] == "reconnect"
    assert doc(db, "accounts/acct-r")["status"] == AccountStatus.RECONNECTING.value
    assert run_sweep(db, NOW + timedelta(seconds=50), CFG).commands_issued == 0


def test_retention_deletes_old_generations_manifest_and_chunks(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    db.document("accounts/acct-k").set({"status": "connected"})
    live_lease(db, "acct-k")
    for generation in range(1, 10):
        base = f"accounts/acct-k/backups/{generation}"
        db.document(base).set({"generation": generation, "good": generation == 2})
        for index in range(2):
            db.document(f"{base}/chunks/{index}").set({"data": b"x"})
    report = run_sweep(db, NOW, CFG)
    assert report.generations_deleted == 3
    backups = db.collection("accounts/acct-k/backups")
    kept = sorted(int(s.id) for s in backups.stream())
    assert kept == [2, 5, 6, 7, 8, 9]
    with_chunks = sorted(int(r.id) for r in backups.list_documents())  # includes chunk-only parents
    assert with_chunks == kept
    assert run_sweep(db, NOW, CFG).generations_deleted == 0


def test_old_dedupe_records_are_pruned(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    for name, age in (("old", timedelta(days=8)), ("young", timedelta(days=6))):
        db.document(f"processed_events/{name}").set({"account_id": "a", "processed_at": NOW - age})
    assert run_sweep(db, NOW, CFG).processed_pruned == 1
    assert [s.id for s in db.collection("processed_events").stream()] == ["young"]


def test_an_unreadable_policy_record_does_not_stop_the_sweep(clean_firestore: firestore.Client) -> None:
    db = clean_firestore
    db.document("accounts/fine").set({"status": "connected"})
    db.document("accounts/odd").set({"status": "connected", "policy": "not a map"})
    report = run_sweep(db, NOW, CFG)
    assert report.accounts_seen == 2 and report.errors == 0
    assert doc(db, "accounts/fine")["status"] == "unattended"
    assert doc(db, "accounts/odd")["status"] == "unattended"
