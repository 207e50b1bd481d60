"""An in-memory `EventPublisher` for tests: records what it publishes, fails on request.

It mimics the real client where the outbox can tell the difference: publishing
to a missing topic fails, and after one message of an ordering key fails, the
later messages of that key in the same call fail too (Pub/Sub pauses the key;
the real adapter resumes it before the next call).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from connector.ports import EventMessage, PublisherError, PublishOutcome

PAUSED = "ordering key paused after an earlier failure"


class MemoryPublisher:
    """Publishes into `self.published`; `fail_next`/`go_down` make attempts fail."""

    def __init__(self, *, topic_exists: bool = False) -> None:
        self.topic_exists = topic_exists
        self.published: list[tuple[str, EventMessage]] = []
        """(message id, message) in publish order, duplicates included."""
        self.attempts = 0
        self.closed = False
        self._down_error: str | None = None
        self._failures: list[str] = []
        self._ids = itertools.count(1)

    def fail_next(self, count: int, error: str = "injected failure") -> None:
        """The next `count` message attempts fail (later ones of their keys too)."""
        self._failures.extend([error] * count)

    def go_down(self, error: str = "503 failed to connect: connection refused") -> None:
        """Every attempt fails until `come_back`."""
        self._down_error = error

    def come_back(self) -> None:
        self._down_error = None

    async def ensure_topic(self) -> None:
        if self._down_error is not None:
            raise PublisherError(f"Pub/Sub topic: {self._down_error}")
        self.topic_exists = True

    async def publish(self, messages: Sequence[EventMessage]) -> list[PublishOutcome]:
        if self.closed:
            raise PublisherError("the publisher is closed")
        await asyncio.sleep(0)
        paused: set[str] = set()
        outcomes: list[PublishOutcome] = []
        for message in messages:
            self.attempts += 1
            error = self._attempt_error(message, paused)
            if error is None:
                message_id = str(next(self._ids))
                self.published.append((message_id, message))
                outcomes.append(PublishOutcome(message_id=message_id))
            else:
                paused.add(message.ordering_key)
                outcomes.append(PublishOutcome(error=error))
        return outcomes

    def _attempt_error(self, message: EventMessage, paused: set[str]) -> str | None:
        if message.ordering_key in paused:
            return PAUSED
        if self._down_error is not None:
            return self._down_error
        if self._failures:
            return self._failures.pop(0)
        if not self.topic_exists:
            return "404 topic not found"
        return None

    async def close(self) -> None:
        self.closed = True
