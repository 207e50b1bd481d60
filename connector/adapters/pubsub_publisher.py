"""The real `EventPublisher`: google-cloud-pubsub's PublisherClient with message ordering.

Two properties of the client shape this adapter:
- With ordering enabled the client retries a failed publish forever by itself,
  so a message never fails while Pub/Sub is down. The outbox owns retries, so
  each publish here is one attempt (`retry=None`) with a deadline.
- After a failed publish the client pauses that ordering key; every later
  publish of the key fails until `resume_publish`. This adapter resumes each
  failed key once the call's outcomes are in.
- The client starts a thread for each batch it commits (one per ordering key), from
  inside `publish`, and `Thread.start` waits until that thread runs: the calls go
  from a worker thread, never from the event loop (connector/thread_pools.py says why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - the from-form hides the module from mypy
import grpc  # type: ignore[import-untyped]
from google.api_core.exceptions import AlreadyExists, GoogleAPIError, NotFound
from google.auth.exceptions import GoogleAuthError
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

from connector.ports import EventMessage, PublisherError, PublishOutcome

DEFAULT_PUBLISH_TIMEOUT_S = 10.0
MAX_RECONNECT_BACKOFF_MS = 5000
"""gRPC waits up to 2 minutes between reconnects by default; once Pub/Sub is back,
events should flow again within seconds."""

_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
]


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a log line or a metric label."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if name == "PublishToPausedOrderingKeyException":
        text = text or "ordering key paused after an earlier failure"
    return f"{name}: {text}"[:300] if text else name


def _secure_channel(host: str, **kwargs: Any) -> grpc.Channel:
    """The transport's default channel plus our reconnect backoff."""
    options = [*(kwargs.pop("options", None) or []), _CHANNEL_OPTIONS[-1]]
    channel: grpc.Channel = PublisherGrpcTransport.create_channel(host, options=options, **kwargs)
    return channel


def _client(emulator_host: str | None) -> Any:
    """A PublisherClient with ordering; an emulator host gets an insecure channel to it."""
    channel: grpc.Channel | Callable[..., grpc.Channel]
    if emulator_host:
        channel = grpc.insecure_channel(emulator_host, options=_CHANNEL_OPTIONS)
        transport = PublisherGrpcTransport(host=emulator_host, channel=channel)
    else:
        transport = PublisherGrpcTransport(channel=_secure_channel)
    options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    return pubsub_v1.PublisherClient(publisher_options=options, transport=transport)


class PubSubPublisher:
    """Publishes `EventMessage`s to one topic; one attempt per message per call."""

    def __init__(self, client: Any, topic_path: str, publish_timeout_s: float) -> None:
        self._client = client
        self.topic_path = topic_path
        self._timeout = publish_timeout_s
        self._closed = False

    @classmethod
    def connect(
        cls,
        project: str,
        topic: str,
        *,
        emulator_host: str | None = None,
        publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
    ) -> PubSubPublisher:
        """Build the client (no network yet); `emulator_host` defaults to PUBSUB_EMULATOR_HOST."""
        host = emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST") or None
        try:
            client = _client(host)
        except GoogleAuthError as exc:
            raise PublisherError(
                f"Pub/Sub: no usable Google credentials (GOOGLE_APPLICATION_CREDENTIALS): {one_line(exc)}"
            ) from exc
        return cls(client, client.topic_path(project, topic), publish_timeout_s)

    async def ensure_topic(self) -> None:
        await asyncio.to_thread(self._ensure_topic)

    def _ensure_topic(self) -> None:
        try:
            try:
                self._client.get_topic(topic=self.topic_path, retry=None, timeout=self._timeout)
            except NotFound:
                with contextlib.suppress(AlreadyExists):
                    self._client.create_topic(name=self.topic_path, retry=None, timeout=self._timeout)
        except GoogleAPIError as exc:
            raise PublisherError(f"Pub/Sub topic {self.topic_path}: {one_line(exc)}") from exc

    async def publish(self, messages: Sequence[EventMessage]) -> list[PublishOutcome]:
        if self._closed:
            raise PublisherError("the publisher is closed")
        started = await asyncio.to_thread(lambda: [self._start(message) for message in messages])
        pending = [item if isinstance(item, BaseException) else asyncio.wrap_future(item) for item in started]
        outcomes = list(await asyncio.gather(*(self._outcome(item) for item in pending)))
        for message, outcome in zip(messages, outcomes, strict=True):
            if not outcome.ok:
                self._resume(message.ordering_key)
        return outcomes

    def _start(self, message: EventMessage) -> concurrent.futures.Future[Any] | BaseException:
        """Hand one message to the client (in call order, which keeps each key's order)."""
        try:
            future: concurrent.futures.Future[Any] = self._client.publish(
                self.topic_path,
                message.data,
                ordering_key=message.ordering_key,
                retry=None,
                timeout=self._timeout,
                **message.attributes,
            )
        except Exception as exc:
            return exc
        return future

    async def _outcome(self, item: asyncio.Future[Any] | BaseException) -> PublishOutcome:
        if isinstance(item, BaseException):
            return PublishOutcome(error=one_line(item))
        try:
            # The client's own deadline ends every attempt; this only guards against a lost callback.
            message_id = await asyncio.wait_for(item, self._timeout + 5.0)
        except TimeoutError:
            return PublishOutcome(error=f"no answer from Pub/Sub within {self._timeout + 5.0:g} s")
        except Exception as exc:
            return PublishOutcome(error=one_line(exc))
        return PublishOutcome(message_id=str(message_id))

    def _resume(self, ordering_key: str) -> None:
        # RuntimeError: the key is not paused (e.g. the message was refused before sending).
        with contextlib.suppress(RuntimeError, ValueError):
            self._client.resume_publish(self.topic_path, ordering_key)

    async def close(self) -> None:
        """Send what the client still holds, then close the channel."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._client.stop)
        self._client.transport.close()
