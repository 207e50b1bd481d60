"""The wire contract shared by the connector and the Cloud Functions.

Standard library only: `functions/` is deployed on its own and the connector
installs this same package (pyproject maps `wa_wire` to `functions/wa_wire`).
Everything that crosses a process boundary (Pub/Sub events, Firestore commands,
the app's requests) is one of the frozen dataclasses here, built with
`decode`/`from_json` and written with `encode`/`to_json`.
"""

from wa_wire.codec import decode, encode, from_json, to_json
from wa_wire.commands import (
    Command,
    CommandAction,
    CommandResult,
    CommandStatus,
    command_id_for,
)
from wa_wire.errors import WireError
from wa_wire.events import SCHEMA, EventType, LifecycleEvent
from wa_wire.names import DEFAULT_TOPIC, AccountStatus, Collections
from wa_wire.requests import Request, RequestAction, RequestDecision, RequestStatus

__all__ = [
    "DEFAULT_TOPIC",
    "SCHEMA",
    "AccountStatus",
    "Collections",
    "Command",
    "CommandAction",
    "CommandResult",
    "CommandStatus",
    "EventType",
    "LifecycleEvent",
    "Request",
    "RequestAction",
    "RequestDecision",
    "RequestStatus",
    "WireError",
    "command_id_for",
    "decode",
    "encode",
    "from_json",
    "to_json",
]
