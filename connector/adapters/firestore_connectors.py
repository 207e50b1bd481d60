"""The real `ConnectorRegistry`: `connectors/{id}` heartbeats in Firestore.

Each connector writes only its own document, so a heartbeat is a plain merge
write; `renewed_at` (and, on this process's first heartbeat, `started_at`) is
the server timestamp, read back from the write's transform results. A listing
carries the server's read time, so readers can age records without any host's
wall clock. Malformed documents are reported in the listing and left alone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from google.cloud import firestore

from connector.lease_record import LeaseError, check_id, to_micros
from connector.registry_record import ConnectorInfo, ConnectorRecord, RegistryView
from wa_wire.names import Collections

T = TypeVar("T")


class FirestoreConnectorRegistry:
    def __init__(self, client: firestore.Client) -> None:
        self._db = client
        # Its own threads: a renewal must never wait behind backups or status writes
        # in the default executor, or the renew deadline passes and the lease is lost.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wa-registry")
        self._started: dict[str, datetime] = {}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    def _ref(self, connector_id: str) -> firestore.DocumentReference:
        return self._db.collection(Collections.CONNECTORS).document(check_id("connector id", connector_id))

    def _heartbeat(self, info: ConnectorInfo) -> ConnectorRecord:
        first = info.connector_id not in self._started
        fields = {**info.to_fields(), "renewed_at": firestore.SERVER_TIMESTAMP}
        if first:
            fields["started_at"] = firestore.SERVER_TIMESTAMP
        result = self._ref(info.connector_id).set(fields, merge=True)
        stamp = to_micros(result.transform_results[0].timestamp_value)
        if first:
            self._started[info.connector_id] = stamp
        return ConnectorRecord(info, started_at=self._started[info.connector_id], renewed_at=stamp)

    def _list(self) -> RegistryView:
        records, invalid, read_time = [], {}, None
        for snapshot in self._db.collection(Collections.CONNECTORS).stream():
            read_time = snapshot.read_time
            try:
                records.append(ConnectorRecord.from_fields(snapshot.id, snapshot.to_dict() or {}))
            except LeaseError as exc:
                invalid[snapshot.id] = str(exc)
        records.sort(key=lambda r: r.connector_id)
        return RegistryView(tuple(records), None if read_time is None else to_micros(read_time), invalid)

    async def heartbeat(self, info: ConnectorInfo) -> ConnectorRecord:
        return await self._run(self._heartbeat, info)

    async def list_connectors(self) -> RegistryView:
        return await self._run(self._list)

    async def remove(self, connector_id: str) -> None:
        ref = self._ref(connector_id)
        await self._run(ref.delete)
        self._started.pop(connector_id, None)
