"""In-memory `ConnectorRegistry` for tests: field dicts like Firestore's, stamped by an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from connector.clock import Clock, SystemClock
from connector.lease_record import LeaseError, check_id, to_micros
from connector.registry_record import ConnectorInfo, ConnectorRecord, RegistryView


class MemoryConnectorRegistry:
    def __init__(self, server_clock: Clock | None = None) -> None:
        self.server_clock: Clock = server_clock or SystemClock()
        self.docs: dict[str, dict[str, Any]] = {}
        self._started: set[str] = set()
        self._last: datetime | None = None

    def server_now(self) -> datetime:
        now = to_micros(self.server_clock.now())
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now

    async def heartbeat(self, info: ConnectorInfo) -> ConnectorRecord:
        now = self.server_now()
        fields = {**self.docs.get(info.connector_id, {}), **info.to_fields(), "renewed_at": now}
        if info.connector_id not in self._started:
            fields["started_at"] = now
            self._started.add(info.connector_id)
        self.docs[info.connector_id] = fields
        return ConnectorRecord.from_fields(info.connector_id, fields)

    async def list_connectors(self) -> RegistryView:
        records, invalid = [], {}
        for connector_id in sorted(self.docs):
            try:
                records.append(ConnectorRecord.from_fields(connector_id, self.docs[connector_id]))
            except LeaseError as exc:
                invalid[connector_id] = str(exc)
        return RegistryView(tuple(records), self.server_now(), invalid)

    async def remove(self, connector_id: str) -> None:
        self.docs.pop(check_id("connector id", connector_id), None)
        self._started.discard(connector_id)
