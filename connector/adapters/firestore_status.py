"""The visible account state in `accounts/{id}`, written by the connector that holds it.

Each write checks `leases/{id}.epoch` and refuses (StaleEpochError) when the
writer's epoch is older; the commit requires the lease unchanged since it was read
(firestore_cas: no lock, so a killed connector blocks nobody). With the lease
store's `LeaseVersions` the lease is not even read: the write is one round trip.
A connector that lost the lease can no longer overwrite what the new holder shows.
The QR code is stored only while pairing and deleted with the next write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.cloud import firestore

from connector.adapters.firestore_cas import LeaseFence, LeaseVersions, optimistic
from connector.adapters.firestore_retry import retry_contended
from connector.ports import StaleEpochError, StatusUpdate
from wa_wire import AccountStatus, Collections


def status_fields(update: StatusUpdate) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": update.status.value,
        "status_reason": update.reason[:2000],
        "holder": update.holder,
        "lease_epoch": update.epoch,
        "updated_at": firestore.SERVER_TIMESTAMP,
        "qr": (
            {"code": update.qr[0], "expires_at": update.qr[1]}
            if update.qr is not None and update.status is AccountStatus.PAIRING
            else firestore.DELETE_FIELD
        ),
    }
    if update.jid is not None:
        fields["jid"] = update.jid
    if update.connected_at is not None:
        fields["last_connected_at"] = update.connected_at
    return fields


class FirestoreStatusWriter:
    def __init__(self, client: firestore.Client, versions: LeaseVersions | None = None) -> None:
        self._client = client
        self._versions = versions  # the lease store's: a write then checks the lease unread

    async def write(self, account: str, update: StatusUpdate) -> None:
        await asyncio.to_thread(self.write_sync, account, update)

    @retry_contended
    def write_sync(self, account: str, update: StatusUpdate) -> None:
        doc = self._client.collection(Collections.ACCOUNTS).document(account)
        fence = LeaseFence(self._client, account, self._versions)

        def body(batch: firestore.WriteBatch) -> None:
            current = fence.epoch(batch)
            if update.epoch < current:
                raise StaleEpochError(
                    f"status of {account} not written: epoch {update.epoch} is older than the lease's {current}"
                )
            batch.set(doc, status_fields(update), merge=True)

        optimistic(self._client, body)
