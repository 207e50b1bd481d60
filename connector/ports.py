"""The connector's ports: one Protocol per external role it talks to.

Each has a real adapter (connector/adapters/) and an in-memory fake for unit
tests; contract tests run the same cases against both. The Clock port lives in
`connector.clock`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wa_wire import LifecycleEvent, to_json


class EventSink(Protocol):
    """Where lifecycle events go: the durable outbox (then Pub/Sub).

    `emit` must not block on the network: the outbox writes locally first.
    """

    def emit(self, event: LifecycleEvent) -> None: ...


class MemoryEventSink:
    """Collects events in a list (tests, and commands that run without a daemon)."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    def emit(self, event: LifecycleEvent) -> None:
        self.events.append(event)


@dataclass(frozen=True)
class EventMessage:
    """One lifecycle event as it goes to Pub/Sub (DESIGN.md Part 1, Pub/Sub).

    The outbox stores and sends these bytes as they are, without parsing them
    again, so an event queued by a newer version still goes out after a downgrade.
    """

    event_id: str
    ordering_key: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: LifecycleEvent) -> EventMessage:
        """Data = the event's JSON, attributes = account_id and type, ordering key = account id."""
        return cls(
            event_id=event.event_id,
            ordering_key=event.account_id,
            data=to_json(event).encode(),
            attributes=event.pubsub_attributes(),
        )


@dataclass(frozen=True)
class PublishOutcome:
    """What became of one message: a server message id, or a one-line error."""

    message_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.message_id is not None and self.error is None


class EventPublisher(Protocol):
    """Pub/Sub's role: publish lifecycle events, in order per ordering key.

    The outbox owns retries: `publish` makes one attempt per message and reports
    each outcome instead of raising; a failed key must be publishable again on
    the next call (the real client pauses it until resumed).
    """

    async def ensure_topic(self) -> None:
        """Create the topic if it is missing (an existing one is fine)."""
        ...

    async def publish(self, messages: Sequence[EventMessage]) -> list[PublishOutcome]:
        """One outcome per message, in the order given."""
        ...

    async def close(self) -> None: ...
