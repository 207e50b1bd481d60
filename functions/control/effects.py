"""The Firestore reads and writes the functions need, kept out of the triggers."""

from __future__ import annotations

import os
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud import firestore

from control import accounts
from policy import Outcome, PolicyConfig, decide
from policy.rules import moves_state
from wa_wire import Collections, LifecycleEvent

_client: firestore.Client | None = None


def firestore_client() -> firestore.Client:
    """The Firestore client, created on first use (never at import).

    `google.cloud.firestore.Client` rather than firebase_admin: inside the
    functions emulator firebase_admin fails on default credentials (NOTES.md).
    """
    global _client  # noqa: PLW0603 - one lazily built client per process
    if _client is None:
        project = os.environ.get("GCLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
        _client = firestore.Client(project=project)
    return _client


ATTEMPTS = 8
CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound)
"""What a guarded commit raises when something it read changed: read again and decide again."""


class ContentionError(Exception):
    """Every attempt met a concurrent change (transient: control/lifecycle.py retries it)."""


def apply_lifecycle_event(
    db: firestore.Client, event: LifecycleEvent, now: datetime, config: PolicyConfig
) -> Outcome:
    """Dedupe, load, decide, write: one guarded batch per event, no transaction.

    The dedupe record `processed_events/{event_id}` is created in the same batch
    as the account's new state and the commands, so a redelivery changes nothing
    but the record's `deliveries` counter. Stale-epoch and too-old events are
    recorded as processed (with their outcome) and change nothing else.

    Why not a transaction: the emulator locks what a transaction reads, and the
    events of one account arrive together (logged_out, restored, connected within
    milliseconds); their transactions waited on each other's locks until "lock
    timeout", five attempts in a row, and the event was lost (seen in the demo: a
    second logout never ordered its restore). A batch holds no lock; a conflict
    costs a re-read.
    """
    processed = db.collection(Collections.PROCESSED_EVENTS).document(event.event_id)
    if not moves_state(event.type):
        return record_fact(processed, event)
    for _ in range(ATTEMPTS):
        if processed.get().exists:
            processed.update({"deliveries": firestore.Increment(1)})
            return Outcome.DUPLICATE
        loaded = accounts.load(db, None, event.account_id)
        decision = decide(event, loaded.view, now, config)
        new_ids = accounts.missing_commands(db, None, decision)
        batch = db.batch()
        batch.create(
            processed,
            {
                "account_id": event.account_id,
                "type": event.type.value,
                "outcome": decision.outcome.value,
                "processed_at": firestore.SERVER_TIMESTAMP,
                "deliveries": 1,
            },
        )
        accounts.write_decision(db, batch, loaded, decision, new_ids, guarded=True)
        try:
            batch.commit()
        except CONFLICTS:
            continue
        return decision.outcome
    raise ContentionError(f"event {event.event_id}: the account kept changing for {ATTEMPTS} attempts")


def record_fact(processed: firestore.DocumentReference, event: LifecycleEvent) -> Outcome:
    """A fact changes no account state: record it without a transaction (no lock on the account).

    Facts are most of the traffic (a backup_written per backup); taking the
    account's locks for them made the events that matter time out.
    """
    fields = {
        "account_id": event.account_id,
        "type": event.type.value,
        "outcome": Outcome.FACT.value,
        "processed_at": firestore.SERVER_TIMESTAMP,
        "deliveries": 1,
    }
    try:
        processed.create(fields)
    except gexc.AlreadyExists:
        processed.update({"deliveries": firestore.Increment(1)})
        return Outcome.DUPLICATE
    return Outcome.FACT
