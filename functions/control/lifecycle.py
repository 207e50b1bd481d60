"""Handling of one lifecycle message: parse, validate, record once.

A malformed message is logged (with the field at fault, never the payload,
which may come from anywhere) and acknowledged: retrying it could never succeed
and would only make a retry storm. Firestore errors propagate, so Pub/Sub
retries the message (the trigger has `retry=True`).
"""

from __future__ import annotations

import base64
import binascii
import logging

from control import effects
from wa_wire import LifecycleEvent, WireError, from_json

log = logging.getLogger("wa_keeper.functions.lifecycle")


def parse_message(data_b64: str) -> LifecycleEvent:
    """Decode a Pub/Sub message body (base64 JSON) into an event."""
    try:
        raw = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError("", "message data is not base64") from exc
    return from_json(LifecycleEvent, raw)


def handle_message(data_b64: str, message_id: str) -> bool:
    """Returns True when the event changed state, False for a duplicate or bad message."""
    try:
        event = parse_message(data_b64)
    except WireError as exc:
        log.warning("dropped malformed lifecycle message %s: %s", message_id, exc)
        return False
    applied = effects.record_lifecycle_event(effects.firestore_client(), event)
    if not applied:
        log.info("duplicate event %s for %s ignored", event.event_id, event.account_id)
    return applied
