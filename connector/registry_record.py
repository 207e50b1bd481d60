"""The connector registry record `connectors/{id}`: one heartbeat document per connector.

Other connectors read it to spread accounts (connector/assignment.py); functions
and the CLI read it to show who is alive. `started_at` and `renewed_at` are the
store's (server) time, like the leases: liveness is never judged by comparing
two hosts' wall clocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.lease_record import LeaseError, check_id, to_micros

MAX_HOST_LEN = 256


@dataclass(frozen=True)
class ConnectorInfo:
    """What a connector says about itself in each heartbeat."""

    connector_id: str
    host: str
    version: str
    capacity: int  # how many accounts it will hold at most
    accounts_held: int
    ttl_ms: int  # the heartbeat is stale after this long without a renewal

    def __post_init__(self) -> None:
        check_id("connector id", self.connector_id)
        for name in ("host", "version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_HOST_LEN:
                raise LeaseError(f"connector {name} must be 1..{MAX_HOST_LEN} characters, got {value!r}")
        for name, minimum in (("capacity", 0), ("accounts_held", 0), ("ttl_ms", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise LeaseError(f"connector {name} must be an integer >= {minimum}, got {value!r}")

    def to_fields(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "version": self.version,
            "capacity": self.capacity,
            "accounts_held": self.accounts_held,
            "ttl_ms": self.ttl_ms,
        }


@dataclass(frozen=True)
class ConnectorRecord:
    """One stored heartbeat, as read back."""

    info: ConnectorInfo
    started_at: datetime
    renewed_at: datetime

    @property
    def connector_id(self) -> str:
        return self.info.connector_id

    @classmethod
    def from_fields(cls, connector_id: str, data: Mapping[str, Any]) -> ConnectorRecord:
        """Parse a stored document; a malformed one raises LeaseError naming the field."""
        where = f"connectors/{connector_id}"
        stamps = {}
        for name in ("started_at", "renewed_at"):
            value = data.get(name)
            if not isinstance(value, datetime):
                raise LeaseError(f"{where}: field {name} is {value!r}, expected a timestamp")
            stamps[name] = to_micros(value)
        try:
            info = ConnectorInfo(
                connector_id=connector_id,
                host=data["host"],  # missing fields: KeyError below; bad ones: ConnectorInfo
                version=data["version"],
                capacity=data["capacity"],
                accounts_held=data["accounts_held"],
                ttl_ms=data["ttl_ms"],
            )
        except KeyError as exc:
            raise LeaseError(f"{where}: field {exc.args[0]} is missing") from exc
        except LeaseError as exc:
            raise LeaseError(f"{where}: {exc}") from exc
        return cls(info=info, **stamps)


@dataclass(frozen=True)
class RegistryView:
    """Every heartbeat record as one listing saw it.

    `server_now` is the store's time of the listing (None when unknown or empty);
    `invalid` names the documents that could not be parsed, with the reason
    (they are skipped, not deleted: an operator looks at them).
    """

    records: tuple[ConnectorRecord, ...]
    server_now: datetime | None
    invalid: Mapping[str, str] = field(default_factory=dict)
