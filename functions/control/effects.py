"""The Firestore reads and writes the functions need, kept out of the triggers."""

from __future__ import annotations

import os

from google.cloud import firestore

from wa_wire import Collections, LifecycleEvent
from wa_wire.codec import parse_timestamp

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


def _is_newer(event_at: str, stored: object) -> bool:
    if not isinstance(stored, dict) or not isinstance(stored.get("at"), str):
        return True
    try:
        return parse_timestamp(event_at) > parse_timestamp(stored["at"])
    except ValueError:
        return True


def record_lifecycle_event(db: firestore.Client, event: LifecycleEvent) -> bool:
    """Record `last_event` on the account, exactly once per event id.

    The dedupe record `processed_events/{event_id}` is created in the same
    transaction as the account write, so a redelivery changes nothing but the
    record's `deliveries` counter. An event older than the stored `last_event`
    (events arrive out of order) is recorded as processed without overwriting.
    """
    processed = db.collection(Collections.PROCESSED_EVENTS).document(event.event_id)
    account = db.collection(Collections.ACCOUNTS).document(event.account_id)

    @firestore.transactional
    def apply(tx: firestore.Transaction) -> bool:
        seen = processed.get(transaction=tx)
        current = account.get(transaction=tx)
        if seen.exists:
            tx.update(processed, {"deliveries": firestore.Increment(1)})
            return False
        tx.create(
            processed,
            {
                "account_id": event.account_id,
                "type": event.type.value,
                "processed_at": firestore.SERVER_TIMESTAMP,
                "deliveries": 1,
            },
        )
        stored = current.get("last_event") if current.exists else None
        if _is_newer(event.at, stored):
            tx.set(
                account,
                {
                    "last_event": {
                        "type": event.type.value,
                        "reason_code": event.reason_code,
                        "at": event.at,
                    },
                    "updated_at": firestore.SERVER_TIMESTAMP,
                },
                merge=True,
            )
        return True

    result: bool = apply(db.transaction())
    return result
