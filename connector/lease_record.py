"""The lease record `leases/{account}` and the rules for changing it.

Both lease stores (Firestore and the in-memory fake) apply the same rules: the
`*_fields` functions below decide, from the record as stored, whether a write
happens and what it writes. A store only reads, calls the rule and writes, in
one transaction. `SERVER_NOW` marks the fields the store fills with its own
clock (Firestore: the server timestamp), so no host's wall clock ever reaches
a lease.

Fencing: the lease epoch is the fencing token. A missing lease counts as epoch 0
(the vault, the command inbox and the status writer use the same convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from connector.errors import KeeperError
from connector.ports import StaleEpochError
from wa_wire.names import MAX_ID_LEN

MISSING_EPOCH = 0
"""The epoch of an account that has no lease document."""

SERVER_NOW: Final = "__server_now__"
"""Placeholder in a write: the store puts its own (server) time here."""


class LeaseError(KeeperError):
    """A lease input or a stored lease record is invalid; the message names it."""


def check_id(kind: str, value: object) -> str:
    """Account and connector ids: 1..128 characters, usable as a Firestore document id."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
        raise LeaseError(f"{kind} must be 1..{MAX_ID_LEN} characters, got {value!r}")
    if "/" in value or value in (".", "..") or (value.startswith("__") and value.endswith("__")):
        raise LeaseError(f"{kind} {value!r} is not a valid document id")
    return value


def to_micros(stamp: datetime) -> datetime:
    """A plain UTC datetime at microsecond precision (what Firestore stores and returns)."""
    if stamp.tzinfo is None:
        raise LeaseError(f"timestamp {stamp!r} has no time zone")
    utc = stamp.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC
    )


@dataclass(frozen=True)
class LeaseRecord:
    """One stored lease. Times are the store's (server) time, never a host's clock."""

    account: str
    holder: str | None  # None: released
    epoch: int
    ttl_ms: int
    renewed_at: datetime
    acquired_at: datetime
    transitions: int  # how many times the holder changed

    @property
    def ttl_s(self) -> float:
        return self.ttl_ms / 1000

    @classmethod
    def from_fields(cls, account: str, data: Mapping[str, Any]) -> LeaseRecord:
        """Parse a stored document; a malformed one raises LeaseError naming the field."""

        def field(name: str, kind: type, minimum: int | None = None) -> Any:
            value: Any = data.get(name)
            ok = isinstance(value, kind) and not isinstance(value, bool)
            if ok and minimum is not None:
                ok = value >= minimum
            if not ok:
                raise LeaseError(f"leases/{account}: field {name} is {value!r}, expected {kind.__name__}")
            return value

        holder = data.get("holder")
        if holder is not None:
            try:
                check_id("holder", holder)
            except LeaseError as exc:
                raise LeaseError(f"leases/{account}: field holder: {exc}") from exc
        return cls(
            account=account,
            holder=holder,
            epoch=field("epoch", int, 0),
            ttl_ms=field("ttl_ms", int, 1),
            renewed_at=to_micros(field("renewed_at", datetime)),
            acquired_at=to_micros(field("acquired_at", datetime)),
            transitions=field("transitions", int, 0),
        )

    def to_fields(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "epoch": self.epoch,
            "ttl_ms": self.ttl_ms,
            "renewed_at": self.renewed_at,
            "acquired_at": self.acquired_at,
            "transitions": self.transitions,
        }


def apply_write(
    account: str, current: LeaseRecord | None, fields: Mapping[str, Any], now: datetime
) -> LeaseRecord:
    """The record after merging `fields` into `current`, with SERVER_NOW = `now` (the store's time)."""
    merged = {**({} if current is None else current.to_fields()), **fields}
    return LeaseRecord.from_fields(account, {k: now if v == SERVER_NOW else v for k, v in merged.items()})


@dataclass(frozen=True)
class LeaseView:
    """A lease as one store call saw it.

    `server_now` is the store's time of that read or write (None when unknown);
    with `record.renewed_at` it tells the record's age without any host clock.
    `written` is True when this call changed the record. `version` is the store's token
    for the stored document as seen (None: unknown): with it, another connector's store
    can write on that version without reading it first (`LeaseStore.learn`).
    """

    account: str
    record: LeaseRecord | None
    server_now: datetime | None
    written: bool = False
    version: str | None = None

    def holder(self) -> str | None:
        return None if self.record is None else self.record.holder

    def epoch(self) -> int:
        return MISSING_EPOCH if self.record is None else self.record.epoch


def check_ttl_ms(ttl_ms: object) -> int:
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms <= 0:
        raise LeaseError(f"ttl_ms must be a positive integer, got {ttl_ms!r}")
    return ttl_ms


def acquire_fields(
    current: LeaseRecord | None, expected: LeaseRecord | None, holder: str, ttl_ms: int
) -> dict[str, Any] | None:
    """Take the lease at the next epoch, only if it is still exactly as the caller saw it.

    The caller decided it may take it (missing, released, expired or its own) from
    `expected`; if anything changed since, nothing is written (None) and the caller
    looks again. Taking always increments the epoch: a new holder, or a restarted
    process of the same connector, fences every write of the previous one.
    """
    if current != expected:
        return None
    previous_holder = None if current is None else current.holder
    transitions = 0 if current is None else current.transitions
    if current is not None and previous_holder != holder:
        transitions += 1
    return {
        "holder": holder,
        "epoch": (MISSING_EPOCH if current is None else current.epoch) + 1,
        "ttl_ms": ttl_ms,
        "renewed_at": SERVER_NOW,
        "acquired_at": SERVER_NOW,
        "transitions": transitions,
    }


def renew_fields(current: LeaseRecord | None, holder: str, epoch: int, ttl_ms: int) -> dict[str, Any] | None:
    """Renew only the caller's own lease at the caller's epoch; None when it is not that."""
    if current is None or current.holder != holder or current.epoch != epoch:
        return None
    return {"renewed_at": SERVER_NOW, "ttl_ms": ttl_ms}


def release_fields(current: LeaseRecord | None, holder: str, epoch: int) -> dict[str, Any] | None:
    """Give the lease up (holder null, epoch kept: the next holder increments it)."""
    if current is None or current.holder != holder or current.epoch != epoch:
        return None
    return {"holder": None, "renewed_at": SERVER_NOW}


def epoch_of(account: str, data: Mapping[str, Any] | None) -> int:
    """The epoch of a stored lease document; a missing document is epoch 0."""
    if data is None:
        return MISSING_EPOCH
    epoch = data.get("epoch", MISSING_EPOCH)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise LeaseError(f"leases/{account}: field epoch is {epoch!r}, expected a non-negative integer")
    return epoch


def fence(account: str, current_epoch: int, epoch: int) -> None:
    """Refuse a write made at `epoch` unless it is the lease's current epoch."""
    if epoch < current_epoch:
        raise StaleEpochError(f"{account}: lease epoch {epoch} is older than the current {current_epoch}")
    if epoch > current_epoch:
        raise StaleEpochError(f"{account}: lease epoch {epoch} is ahead of the current {current_epoch}")
