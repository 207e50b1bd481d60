"""Handling of one lifecycle message: parse, validate, apply the policy once.

A malformed message is logged (with the field at fault, never the payload,
which may come from anywhere) and acknowledged: retrying it could never succeed
and would only make a retry storm. Firestore errors propagate, so Pub/Sub
retries the message (the trigger has `retry=True`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime

from google.api_core import exceptions as gexc
from google.api_core import retry

from control import effects, params
from control.ids import document_id_problem
from policy import Outcome
from wa_wire import LifecycleEvent, WireError, from_json

log = logging.getLogger("wa_keeper.functions.lifecycle")

TRANSIENT = (gexc.Aborted, gexc.ServiceUnavailable, gexc.DeadlineExceeded, effects.ContentionError)


def is_contention(exc: BaseException) -> bool:
    """A transient Firestore error, also when `@transactional` gave up on it after its own attempts
    (it raises ValueError("Failed to commit transaction in 5 attempts") from the last error)."""
    if isinstance(exc, ValueError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return isinstance(exc, TRANSIENT)


CONTENTION_RETRY = retry.Retry(
    predicate=is_contention,
    initial=0.2,
    maximum=3.0,
    multiplier=2.0,
    timeout=45.0,
)
"""Lock timeouts under contention are retried here as well as by Pub/Sub: the
functions emulator acknowledges a message whose function failed, and the event
would be lost. Safe: the transaction dedupes on the event id."""


def parse_message(data_b64: str) -> LifecycleEvent:
    """Decode a Pub/Sub message body (base64 JSON) into an event."""
    try:
        raw = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError("", "message data is not base64") from exc
    event = from_json(LifecycleEvent, raw)
    for name in ("account_id", "event_id"):
        problem = document_id_problem(getattr(event, name))
        if problem:
            raise WireError(name, problem)
    return event


def handle_message(data_b64: str, message_id: str, now: datetime | None = None) -> Outcome | None:
    """Parse and apply one message; None for a malformed one (logged and acknowledged)."""
    try:
        event = parse_message(data_b64)
    except WireError as exc:
        log.warning("dropped malformed lifecycle message %s: %s", message_id, exc)
        return None
    moment = now or datetime.now(UTC)
    apply = CONTENTION_RETRY(effects.apply_lifecycle_event)
    outcome: Outcome = apply(effects.firestore_client(), event, moment, params.load_config())
    if outcome is not Outcome.APPLIED:
        log.info(
            "event %s (%s) for %s: %s", event.event_id, event.type.value, event.account_id, outcome.value
        )
    return outcome
