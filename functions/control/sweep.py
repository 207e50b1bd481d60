"""The scheduled sweep: expire stale commands, tick each account, prune old data.

Each step reads, asks a pure function (policy.housekeeping, policy.settle)
and writes. One account's failure is logged and counted, and the sweep goes
on with the others; the next sweep retries it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from google.api_core.exceptions import FailedPrecondition, GoogleAPICallError
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from control import accounts, effects, params
from control.errors import ControlError
from policy import PolicyConfig, settle
from policy.housekeeping import (
    command_expired,
    generations_to_delete,
    lease_is_live,
    processed_cutoff,
    should_mark_unattended,
)
from wa_wire import AccountStatus, Collections, CommandStatus
from wa_wire.codec import utc_timestamp
from wa_wire.names import SubCollections

log = logging.getLogger("wa_keeper.functions.sweep")

DELETE_BATCH = 400
"""Deletes per batched commit (Firestore allows 500 writes per commit)."""


@dataclass
class SweepReport:
    """What one sweep did (logged; tests read it)."""

    commands_expired: int = 0
    accounts_seen: int = 0
    accounts_settled: int = 0
    commands_issued: int = 0
    accounts_unattended: int = 0
    generations_deleted: int = 0
    processed_pruned: int = 0
    errors: int = 0

    def line(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def expire_commands(db: firestore.Client, now: datetime) -> int:
    """Pending commands past `expires_at` become `expired` (compare-and-set: a claim wins)."""
    query = db.collection(Collections.COMMANDS).where(
        filter=FieldFilter("status", "==", CommandStatus.PENDING.value)
    )
    expired = 0
    for snap in query.stream():
        data = snap.to_dict() or {}
        if not command_expired(data.get("status"), data.get("expires_at"), now):
            continue
        update = {
            "status": CommandStatus.EXPIRED.value,
            "finished_at": utc_timestamp(now),
            "result": {"ok": False, "message": "expired before a connector claimed it"},
        }
        try:
            snap.reference.update(update, option=db.write_option(last_update_time=snap.update_time))
        except FailedPrecondition:
            continue  # claimed (or changed) since we read it
        expired += 1
    return expired


def unattended_reason(data: dict[str, Any]) -> str:
    last = data.get("status")
    return f"no connector holds this account (last status: {last if isinstance(last, str) else 'none'})"


def tick_account(
    db: firestore.Client, account: str, now: datetime, config: PolicyConfig
) -> tuple[bool, int, bool]:
    """Settle one account and mark it unattended if nobody holds it: (settled, commands, unattended)."""

    @firestore.transactional
    def apply(tx: firestore.Transaction) -> tuple[bool, int, bool]:
        loaded = accounts.load(db, tx, account)
        decision = settle(loaded.view, now, config)
        new_ids = accounts.missing_commands(db, tx, decision)
        lease = loaded.lease
        live = lease_is_live(lease.get("holder"), lease.get("renewed_at"), lease.get("ttl_ms"), now, config)
        unattended = loaded.exists and should_mark_unattended(
            loaded.data.get("status"), loaded.data.get("desired"), live
        )
        accounts.write_decision(db, tx, loaded, decision, new_ids)
        if unattended:
            fields = {
                "status": AccountStatus.UNATTENDED.value,
                "status_reason": unattended_reason(loaded.data),
                "updated_at": firestore.SERVER_TIMESTAMP,
            }
            tx.set(accounts.account_ref(db, account), fields, merge=True)
        return decision.changed, len(new_ids), unattended

    result: tuple[bool, int, bool] = apply(db.transaction())
    return result


def delete_chunks(db: firestore.Client, manifest: firestore.DocumentReference) -> None:
    refs = list(manifest.collection(SubCollections.CHUNKS).list_documents())
    for start in range(0, len(refs), DELETE_BATCH):
        batch = db.batch()
        for ref in refs[start : start + DELETE_BATCH]:
            batch.delete(ref)
        batch.commit()


def prune_generations(db: firestore.Client, account: str, config: PolicyConfig) -> int:
    """Retention. The manifest goes first: a crash leaves orphan chunks, never a manifest without chunks."""
    backups = accounts.backups_ref(db, account)
    refs = accounts.backup_refs(account, backups.select(["generation", "good"]).stream())
    doomed = generations_to_delete(refs, config)
    for generation in doomed:
        manifest = backups.document(str(generation))
        manifest.delete()
        delete_chunks(db, manifest)
    return len(doomed)


def prune_processed(db: firestore.Client, now: datetime, config: PolicyConfig) -> int:
    """Delete dedupe records older than the TTL, in batches."""
    cutoff = processed_cutoff(now, config)
    query = (
        db.collection(Collections.PROCESSED_EVENTS)
        .where(filter=FieldFilter("processed_at", "<", cutoff))
        .limit(DELETE_BATCH)
    )
    pruned = 0
    while True:
        refs = [snap.reference for snap in query.stream()]
        if not refs:
            return pruned
        batch = db.batch()
        for ref in refs:
            batch.delete(ref)
        batch.commit()
        pruned += len(refs)


def run_sweep(db: firestore.Client, now: datetime, config: PolicyConfig) -> SweepReport:
    report = SweepReport()
    report.commands_expired = expire_commands(db, now)
    for ref in db.collection(Collections.ACCOUNTS).list_documents():
        report.accounts_seen += 1
        try:
            settled, issued, unattended = tick_account(db, ref.id, now, config)
            report.accounts_settled += int(settled)
            report.commands_issued += issued
            report.accounts_unattended += int(unattended)
            report.generations_deleted += prune_generations(db, ref.id, config)
        except (GoogleAPICallError, ControlError, ValueError) as exc:
            report.errors += 1
            log.error("sweep of account %s failed: %s", ref.id, exc)
    report.processed_pruned = prune_processed(db, now, config)
    log.info("sweep: %s", report.line())
    return report


def handle_schedule(now: datetime | None = None) -> SweepReport:
    """The scheduled trigger's body."""
    return run_sweep(effects.firestore_client(), now or datetime.now(UTC), params.load_config())
