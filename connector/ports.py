"""The connector's ports: one Protocol per external role it talks to.

Each has a real adapter (connector/adapters/) and an in-memory fake for unit
tests; contract tests run the same cases against both. The Clock port lives in
`connector.clock`.
"""

from __future__ import annotations

from typing import Protocol

from wa_wire import LifecycleEvent


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
