"""The first slice end to end: Pub/Sub emulator -> functions emulator -> Firestore emulator."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - the from-form hides the module from mypy
import pytest
from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from tests import emulator
from wa_wire import DEFAULT_TOPIC, Collections, EventType, LifecycleEvent, to_json

# The first call of a function in the emulator starts its Python process (~10 s).
DEADLINE_S = 60.0


@pytest.fixture
def publisher() -> pubsub_v1.PublisherClient:
    client = pubsub_v1.PublisherClient()
    topic = client.topic_path(emulator.project_id(), DEFAULT_TOPIC)
    with contextlib.suppress(AlreadyExists):
        client.create_topic(name=topic)
    return client


def publish(client: pubsub_v1.PublisherClient, data: bytes, **attributes: str) -> None:
    topic = client.topic_path(emulator.project_id(), DEFAULT_TOPIC)
    client.publish(topic, data, **attributes).result(timeout=30)


def event(account: str, kind: EventType = EventType.CONNECTED, reason: int | None = None) -> LifecycleEvent:
    return LifecycleEvent.new(
        kind,
        account_id=account,
        connector_id="conn-test",
        lease_epoch=1,
        at=datetime.now(UTC),
        reason_code=reason,
    )


def publish_event(client: pubsub_v1.PublisherClient, evt: LifecycleEvent) -> None:
    publish(client, to_json(evt).encode(), **evt.pubsub_attributes())


def test_event_reaches_the_account_document(
    clean_firestore: firestore.Client, publisher: pubsub_v1.PublisherClient
) -> None:
    evt = event("acct-e2e", EventType.LOGGED_OUT, reason=401)
    publish_event(publisher, evt)
    doc = emulator.wait_for_document(
        clean_firestore, f"{Collections.ACCOUNTS}/acct-e2e", lambda d: "last_event" in d, DEADLINE_S
    )
    assert doc["last_event"] == {"type": "logged_out", "reason_code": 401, "at": evt.at}
    assert isinstance(doc["updated_at"], datetime)


def test_duplicate_delivery_changes_the_document_once(
    clean_firestore: firestore.Client, publisher: pubsub_v1.PublisherClient
) -> None:
    evt = event("acct-dup")
    account_path = f"{Collections.ACCOUNTS}/acct-dup"
    processed_path = f"{Collections.PROCESSED_EVENTS}/{evt.event_id}"
    publish_event(publisher, evt)
    emulator.wait_for_document(clean_firestore, account_path, lambda d: "last_event" in d, DEADLINE_S)
    first = clean_firestore.document(account_path).get()

    publish_event(publisher, evt)
    record = emulator.wait_for_document(
        clean_firestore, processed_path, lambda d: d.get("deliveries") == 2, DEADLINE_S
    )
    assert record["account_id"] == "acct-dup"
    again = clean_firestore.document(account_path).get()
    assert again.update_time == first.update_time
    assert again.to_dict() == first.to_dict()


def test_malformed_messages_are_dropped_and_the_function_keeps_serving(
    clean_firestore: firestore.Client, publisher: pubsub_v1.PublisherClient
) -> None:
    bad = event("acct-bad")
    broken = bad.__dict__ | {"detail": "x" * 5000}
    publish(publisher, json.dumps({k: getattr(v, "value", v) for k, v in broken.items()}).encode())
    publish(publisher, b"not json at all")
    publish(publisher, b'{"type": "connected"}')

    good = event("acct-good")
    publish_event(publisher, good)
    emulator.wait_for_document(
        clean_firestore, f"{Collections.ACCOUNTS}/acct-good", lambda d: "last_event" in d, DEADLINE_S
    )
    assert not clean_firestore.document(f"{Collections.ACCOUNTS}/acct-bad").get().exists
    assert not clean_firestore.document(f"{Collections.PROCESSED_EVENTS}/{bad.event_id}").get().exists


def test_an_older_event_does_not_overwrite_a_newer_one(
    clean_firestore: firestore.Client, publisher: pubsub_v1.PublisherClient
) -> None:
    newer = event("acct-order", EventType.CONNECTED)
    older = LifecycleEvent.new(
        EventType.DISCONNECTED,
        account_id="acct-order",
        connector_id="conn-test",
        lease_epoch=1,
        at=datetime(2020, 1, 1, tzinfo=UTC),
        reason_code=428,
    )
    publish_event(publisher, newer)
    path = f"{Collections.ACCOUNTS}/acct-order"
    emulator.wait_for_document(clean_firestore, path, lambda d: "last_event" in d, DEADLINE_S)
    publish_event(publisher, older)
    emulator.wait_for_document(
        clean_firestore, f"{Collections.PROCESSED_EVENTS}/{older.event_id}", lambda d: True, DEADLINE_S
    )
    doc = clean_firestore.document(path).get().to_dict() or {}
    assert doc["last_event"]["type"] == "connected"
