"""Lifecycle events: what the connector publishes to the `wa-lifecycle` topic.

All event types share one shape (DESIGN.md Part 1), so one dataclass carries
them and `EventType` enumerates the types; what differs per type travels in
`reason_code`, `detail` and `session_generation`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from wa_wire.codec import utc_timestamp, validate_fields
from wa_wire.errors import WireError
from wa_wire.names import MAX_DETAIL_LEN, MAX_ID_LEN

SCHEMA = 1
"""Version of the event shape; a consumer rejects versions newer than it knows."""

_ID = {"max_len": MAX_ID_LEN, "min_len": 1}


class EventType(StrEnum):
    """Every lifecycle event type of the contract."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LOGGED_OUT = "logged_out"
    STREAM_REPLACED = "stream_replaced"
    STREAM_ERROR = "stream_error"
    TEMPORARY_BAN = "temporary_ban"
    CLIENT_OUTDATED = "client_outdated"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    PAIRING = "pairing"
    """A QR code is waiting; the code itself never goes to Pub/Sub."""
    PAIRED = "paired"
    SESSION_MISSING = "session_missing"
    RESTORED = "restored"
    RESTORE_FAILED = "restore_failed"
    BACKUP_WRITTEN = "backup_written"
    LEASE_ACQUIRED = "lease_acquired"
    LEASE_LOST = "lease_lost"
    WIPED = "wiped"
    DISK_LOST = "disk_lost"


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle event of one account.

    Attributes:
        schema: shape version (`SCHEMA`).
        event_id: uuid4; consumers deduplicate on it (delivery is at least once).
        type: what happened.
        account_id: the account (also the Pub/Sub ordering key), 1..128 chars.
        connector_id: the connector that saw it, 1..128 chars.
        lease_epoch: the account's lease epoch at the time; consumers drop events
            older than the current lease.
        at: when it happened, RFC 3339 UTC.
        reason_code: WhatsApp's numeric code (401, 515, ...) or null.
        detail: human text, at most 2,000 chars; never a secret.
        session_generation: the backup generation concerned, or null.
    """

    schema: int = field(metadata={"min": 1})
    event_id: str = field(metadata=_ID)
    type: EventType
    account_id: str = field(metadata=_ID)
    connector_id: str = field(metadata=_ID)
    lease_epoch: int = field(metadata={"min": 0})
    at: str = field(metadata={"timestamp": True, "max_len": 40})
    reason_code: int | None
    detail: str = field(metadata={"max_len": MAX_DETAIL_LEN})
    session_generation: int | None = field(metadata={"min": 0})

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.schema > SCHEMA:
            raise WireError("schema", f"version {self.schema} is newer than {SCHEMA}")

    @classmethod
    def new(
        cls,
        type: EventType,
        *,
        account_id: str,
        connector_id: str,
        lease_epoch: int,
        at: datetime,
        reason_code: int | None = None,
        detail: str = "",
        session_generation: int | None = None,
    ) -> LifecycleEvent:
        """A fresh event with a new uuid4 `event_id` and the current schema."""
        return cls(
            schema=SCHEMA,
            event_id=str(uuid.uuid4()),
            type=type,
            account_id=account_id,
            connector_id=connector_id,
            lease_epoch=lease_epoch,
            at=utc_timestamp(at),
            reason_code=reason_code,
            detail=detail,
            session_generation=session_generation,
        )

    def pubsub_attributes(self) -> dict[str, str]:
        """Message attributes: `account_id` and `type` (the data holds the rest)."""
        return {"account_id": self.account_id, "type": self.type.value}
