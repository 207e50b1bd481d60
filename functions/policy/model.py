"""The policy's values: what it reads (events, backups) and what it keeps per account.

All frozen and pure. `to_fields`/`from_fields` give the Firestore form: plain
maps, times as RFC 3339 UTC strings (the contract's form), so a stored record
reads back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policy.errors import PolicyError
from wa_wire import AccountStatus, CommandAction, EventType, LifecycleEvent
from wa_wire.codec import parse_timestamp, utc_timestamp

TICK = "sweep"
"""Journal type of the sweep's clock tick (time-driven rules: ban expiry, backoff, stability)."""


def _time(value: datetime | None) -> str | None:
    return None if value is None else utc_timestamp(value)


def _parse_time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PolicyError(f"policy record: {name} is not a timestamp")
    try:
        return parse_timestamp(value, name)
    except ValueError as exc:
        raise PolicyError(f"policy record: {name} is not a timestamp") from exc


def _int(data: dict[str, Any], name: str, default: int | None = None) -> Any:
    value = data.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"policy record: {name} is not a non-negative integer")
    return value


JournalKey = tuple[int, datetime, str]
"""Journal order of an entry: lease epoch, event time, event id."""


@dataclass(frozen=True)
class PolicyEvent:
    """The part of a lifecycle event the policy uses (`type` None: a sweep tick)."""

    event_id: str
    type: EventType | None
    at: datetime
    reason_code: int | None = None
    generation: int | None = None
    ban_until: datetime | None = None
    epoch: int = 0

    @classmethod
    def of(cls, event: LifecycleEvent) -> PolicyEvent:
        until = None
        if event.type is EventType.TEMPORARY_BAN and event.detail:
            try:
                until = parse_timestamp(event.detail)
            except ValueError:
                until = None  # the connector knew no expiry: the config's default applies
        return cls(
            event_id=event.event_id,
            type=event.type,
            at=parse_timestamp(event.at, "at"),
            reason_code=event.reason_code,
            generation=event.session_generation,
            ban_until=until,
            epoch=event.lease_epoch,
        )

    @classmethod
    def tick(cls, at: datetime, epoch: int) -> PolicyEvent:
        return cls(event_id=f"{TICK}:{utc_timestamp(at)}", type=None, at=at, epoch=epoch)

    @property
    def order(self) -> JournalKey:
        """A total order however events arrive: the lease epoch first (one holder, one
        clock per epoch, and epochs only grow), then the event time, then the id."""
        return (self.epoch, self.at, self.event_id)

    def to_fields(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "type": TICK if self.type is None else self.type.value,
            "at": utc_timestamp(self.at),
            "epoch": self.epoch,
            "code": self.reason_code,
            "gen": self.generation,
            "until": _time(self.ban_until),
        }

    @classmethod
    def from_fields(cls, data: object) -> PolicyEvent:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise PolicyError("policy record: a journal entry is not an object with an id")
        kind = data.get("type")
        try:
            event_type = None if kind == TICK else EventType(str(kind))
        except ValueError as exc:
            raise PolicyError(f"policy record: unknown journal type {kind!r}") from exc
        code = data.get("code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise PolicyError("policy record: code is not an integer")
        at = _parse_time(data.get("at"), "at")
        if at is None:
            raise PolicyError("policy record: a journal entry has no time")
        return cls(
            event_id=data["id"],
            type=event_type,
            at=at,
            reason_code=code,
            generation=_int(data, "gen"),
            ban_until=_parse_time(data.get("until"), "until"),
            epoch=_int(data, "epoch", 0),
        )


@dataclass(frozen=True)
class BackupRef:
    """One backup generation as the policy sees it."""

    generation: int
    good: bool


@dataclass(frozen=True)
class Strikes:
    """Logouts retried from a backup in the current window (`accounts/{id}.strikes`)."""

    count: int = 0
    window_started_at: datetime | None = None

    def to_fields(self) -> dict[str, Any]:
        return {"count": self.count, "window_started_at": _time(self.window_started_at)}

    @classmethod
    def from_fields(cls, data: object) -> Strikes:
        if not isinstance(data, dict):
            raise PolicyError("policy record: strikes is not an object")
        return cls(_int(data, "count", 0), _parse_time(data.get("window_started_at"), "window_started_at"))


@dataclass(frozen=True)
class Due:
    """A reconnect the sweep orders once `at` has passed, caused by event `source`."""

    at: datetime
    source: str

    def to_fields(self) -> dict[str, Any]:
        return {"at": utc_timestamp(self.at), "source": self.source}

    @classmethod
    def from_fields(cls, data: object) -> Due | None:
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("source"), str):
            raise PolicyError("policy record: reconnect_due is not an object with a source")
        at = _parse_time(data.get("at"), "reconnect_due.at")
        if at is None:
            raise PolicyError("policy record: reconnect_due has no time")
        return cls(at, data["source"])


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers about one account between events.

    `status` None means no event has decided a status yet (the connector's
    own status writes stand). `restoring` is the generation the policy ordered
    restored, so a `restore_failed` for it can fall back to an older one.
    """

    status: AccountStatus | None = None
    reason: str = ""
    strikes: Strikes = field(default_factory=Strikes)
    connected_since: datetime | None = None
    stream_restart_at: datetime | None = None
    replaced_count: int = 0
    banned_until: datetime | None = None
    reconnect_due: Due | None = None
    restoring: int | None = None

    def to_fields(self) -> dict[str, Any]:
        return {
            "status": None if self.status is None else self.status.value,
            "reason": self.reason,
            "strikes": self.strikes.to_fields(),
            "connected_since": _time(self.connected_since),
            "stream_restart_at": _time(self.stream_restart_at),
            "replaced_count": self.replaced_count,
            "banned_until": _time(self.banned_until),
            "reconnect_due": None if self.reconnect_due is None else self.reconnect_due.to_fields(),
            "restoring": self.restoring,
        }

    @classmethod
    def from_fields(cls, data: object) -> PolicyState:
        if not isinstance(data, dict):
            raise PolicyError("policy record: state is not an object")
        status = data.get("status")
        try:
            parsed = None if status is None else AccountStatus(str(status))
        except ValueError as exc:
            raise PolicyError(f"policy record: unknown status {status!r}") from exc
        reason = data.get("reason", "")
        return cls(
            status=parsed,
            reason=reason if isinstance(reason, str) else "",
            strikes=Strikes.from_fields(data.get("strikes", {})),
            connected_since=_parse_time(data.get("connected_since"), "connected_since"),
            stream_restart_at=_parse_time(data.get("stream_restart_at"), "stream_restart_at"),
            replaced_count=_int(data, "replaced_count", 0),
            banned_until=_parse_time(data.get("banned_until"), "banned_until"),
            reconnect_due=Due.from_fields(data.get("reconnect_due")),
            restoring=_int(data, "restoring"),
        )


@dataclass(frozen=True)
class Order:
    """A command the policy wants issued (the source event makes its id)."""

    action: CommandAction
    reason: str
    source: str
    generation: int | None = None

    def params(self) -> dict[str, object]:
        return {} if self.generation is None else {"generation": self.generation}


@dataclass(frozen=True)
class MarkGood:
    """A fact to record: the account connected from this generation."""

    generation: int


Intent = Order | MarkGood
