"""What the demo sees, as the app and an operator would: account documents and lifecycle events.

`Observations` is a thread-safe store fed by a Firestore listener on
`accounts` and a Pub/Sub subscription of the demo's own on the lifecycle
topic; the script judges and the dashboard draws from its snapshots. Each
record carries the demo's monotonic time of arrival, so recovery times are
measured on one clock. QR codes are kept only to show them on the terminal.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from wa_wire import Collections, LifecycleEvent, WireError, from_json

MAX_EVENTS = 5000


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class AccountDoc:
    """The fields of `accounts/{id}` the demo shows or judges."""

    account: str
    status: str = "-"
    reason: str = ""
    holder: str | None = None
    epoch: int | None = None
    jid: str | None = None
    last_connected_at: str | None = None
    backup_generation: int | None = None
    backup_at: datetime | None = None
    backup_good: bool = False
    strikes: int = 0
    qr_code: str | None = field(default=None, repr=False)
    seen_at: float = 0.0
    updated: datetime | None = None  # the document version's update time (server clock)

    @classmethod
    def of(
        cls, account: str, data: dict[str, Any], seen_at: float, updated: datetime | None = None
    ) -> AccountDoc:
        backup, strikes, qr = _dict(data.get("backup")), _dict(data.get("strikes")), _dict(data.get("qr"))
        epoch, generation, count = data.get("lease_epoch"), backup.get("generation"), strikes.get("count")
        connected = data.get("last_connected_at")
        return cls(
            account=account,
            status=str(data.get("status") or "-"),
            reason=str(data.get("status_reason") or ""),
            holder=data.get("holder") if isinstance(data.get("holder"), str) else None,
            epoch=epoch if isinstance(epoch, int) else None,
            jid=data.get("jid") if isinstance(data.get("jid"), str) else None,
            last_connected_at=None if connected is None else str(connected),
            backup_generation=generation if isinstance(generation, int) else None,
            backup_at=backup.get("at") if isinstance(backup.get("at"), datetime) else None,
            backup_good=backup.get("good") is True,
            strikes=count if isinstance(count, int) else 0,
            qr_code=qr.get("code") if isinstance(qr.get("code"), str) else None,
            seen_at=seen_at,
            updated=updated,
        )


@dataclass(frozen=True)
class SeenEvent:
    """One lifecycle event as it arrived on the demo's subscription."""

    account: str
    type: str
    connector: str
    epoch: int
    generation: int | None
    reason_code: int | None
    seen_at: float

    @classmethod
    def of(cls, event: LifecycleEvent, seen_at: float) -> SeenEvent:
        return cls(
            event.account_id,
            event.type.value,
            event.connector_id,
            event.lease_epoch,
            event.session_generation,
            event.reason_code,
            seen_at,
        )


@dataclass(frozen=True)
class Snapshot:
    docs: dict[str, AccountDoc]
    events: tuple[SeenEvent, ...]

    def events_of(self, account: str, since: float, kind: str | None = None) -> list[SeenEvent]:
        return [
            e
            for e in self.events
            if e.account == account and e.seen_at >= since and (kind is None or e.type == kind)
        ]


class Observations:
    """Newest account documents and every lifecycle event seen, behind one lock."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._docs: dict[str, AccountDoc] = {}
        self._events: list[SeenEvent] = []
        self.dropped_events = 0

    def now(self) -> float:
        return self._monotonic()

    def put_doc(self, account: str, data: dict[str, Any], updated: datetime | None = None) -> None:
        """Keep a document version unless a newer one (by update time) is already here."""
        doc = AccountDoc.of(account, data, self._monotonic(), updated)
        with self._lock:
            known = self._docs.get(account)
            if known is None or known.updated is None or updated is None or updated >= known.updated:
                self._docs[account] = doc

    def put_event(self, raw: bytes) -> None:
        try:
            event = from_json(LifecycleEvent, raw)
        except WireError:
            with self._lock:
                self.dropped_events += 1
            return
        seen = SeenEvent.of(event, self._monotonic())
        with self._lock:
            self._events.append(seen)
            del self._events[:-MAX_EVENTS]

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(dict(self._docs), tuple(self._events))


class AccountWatch:
    """A snapshot listener on the `accounts` collection feeding `Observations`."""

    def __init__(self, client: firestore.Client, store: Observations) -> None:
        self._client, self._store = client, store
        self._watch: Any = None

    def start(self) -> None:
        def on_change(_docs: list[Any], changes: list[Any], _read_time: Any) -> None:
            for change in changes:  # only what changed: an untouched document keeps its arrival time
                doc = change.document
                if doc.exists:
                    self._store.put_doc(doc.id, doc.to_dict() or {}, doc.update_time)

        self._watch = self._client.collection(Collections.ACCOUNTS).on_snapshot(on_change)

    def stop(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch.unsubscribe()
            self._watch = None


class EventWatch:
    """A subscription of the demo's own on the lifecycle topic (deleted at `stop`)."""

    def __init__(self, project: str, topic: str, store: Observations) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLC0415, PLR0402 - heavy, only when watching

        self._publisher = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()
        self._topic = self._publisher.topic_path(project, topic)
        self._name = self._subscriber.subscription_path(project, f"wa-keeper-demo-{uuid.uuid4().hex[:12]}")
        self._store = store
        self._future: Any = None

    def start(self) -> None:
        with contextlib.suppress(gexc.AlreadyExists):
            self._publisher.create_topic(name=self._topic)
        self._subscriber.create_subscription(name=self._name, topic=self._topic)

        def on_message(message: Any) -> None:
            self._store.put_event(bytes(message.data))
            message.ack()

        self._future = self._subscriber.subscribe(self._name, callback=on_message)

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):
                self._future.result(timeout=5)
            self._future = None
        with contextlib.suppress(gexc.GoogleAPICallError):
            self._subscriber.delete_subscription(subscription=self._name)
        self._subscriber.close()
