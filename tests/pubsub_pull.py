"""A pull subscription on the Pub/Sub emulator, for tests that check what was published.

The emulator has no reset call, and under `make test` the functions emulator
subscribes to the real topic, so each test publishes to a topic of its own
(`unique_topic`) instead of clearing shared state.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from dataclasses import dataclass

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - the from-form hides the module from mypy
from google.api_core.exceptions import DeadlineExceeded

from tests import emulator


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Received:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


class PullSubscription:
    """An ordered subscription on `topic` (which must exist) of the emulator project."""

    def __init__(self, topic: str) -> None:
        emulator.require_emulators()
        self._client = pubsub_v1.SubscriberClient()
        project = emulator.project_id()
        self.path = self._client.subscription_path(project, f"{topic}-sub")
        self._client.create_subscription(
            request={
                "name": self.path,
                "topic": f"projects/{project}/topics/{topic}",
                "enable_message_ordering": True,
                "ack_deadline_seconds": 60,
            }
        )

    def pull_until(self, count: int, deadline_s: float) -> list[Received]:
        """Pull and acknowledge until `count` messages came (duplicates count), or raise TimeoutError."""
        received: list[Received] = []
        end = time.monotonic() + deadline_s
        while len(received) < count:
            if time.monotonic() > end:
                raise TimeoutError(f"{len(received)} of {count} messages arrived within {deadline_s} s")
            with contextlib.suppress(DeadlineExceeded):
                response = self._client.pull(subscription=self.path, max_messages=500, timeout=5)
                for item in response.received_messages:
                    msg = item.message
                    received.append(
                        Received(msg.message_id, bytes(msg.data), dict(msg.attributes), msg.ordering_key)
                    )
                if response.received_messages:
                    ids = [item.ack_id for item in response.received_messages]
                    self._client.acknowledge(subscription=self.path, ack_ids=ids)
        return received

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.delete_subscription(subscription=self.path)
        self._client.close()
