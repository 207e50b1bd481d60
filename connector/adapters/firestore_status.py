"""The visible account state in `accounts/{id}`, written by the connector that holds it.

Each write checks `leases/{id}.epoch` and refuses (StaleEpochError) when the
writer's epoch is older; the commit requires the lease unchanged since it was read
(firestore_cas: no lock, so a killed connector blocks nobody). With the lease
store's `LeaseVersions` the lease is not even read: the write is one round trip.
A connector that lost the lease can no longer overwrite what the new holder shows.
The QR code is stored only while pairing and deleted with the next write.

`write` queues behind the commit in flight, and what queued meanwhile goes out in one
batch (a takeover writes `connected` for hundreds of accounts within a second): each
status still carries its own lease check, and a batch that meets a changed lease is
split in halves until the write that met it goes alone, reading the lease
(connector/grouping.py, connector/adapters/firestore_halves.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from google.cloud import firestore

from connector.adapters.firestore_cas import LeaseFence, LeaseVersions, optimistic
from connector.adapters.firestore_halves import commit_in_halves
from connector.adapters.firestore_retry import retry_contended
from connector.grouping import Grouped
from connector.ports import StaleEpochError, StatusUpdate, check_one_each
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


BATCH = 100
"""Statuses per commit: two writes each (the lease check and the status)."""


class FirestoreStatusWriter:
    def __init__(self, client: firestore.Client, versions: LeaseVersions | None = None) -> None:
        self._client = client
        self._versions = versions  # the lease store's: a write then checks the lease unread
        self._grouped: Grouped[str, StatusUpdate, None] = Grouped(self._write_group, BATCH)
        self.commits = 0
        """Batches committed or tried by `write_many_sync` (not counting writes that went alone)."""

    async def write(self, account: str, update: StatusUpdate) -> None:
        """Written with whatever else is queued; raises what the write of this account raised."""
        await self._grouped.submit(account, update)

    async def _write_group(self, items: list[tuple[str, StatusUpdate]]) -> list[Exception | None]:
        return await asyncio.to_thread(self.write_many_sync, items)

    def write_many_sync(self, items: Sequence[tuple[str, StatusUpdate]]) -> list[Exception | None]:
        """Each status as `write_sync` would write it, in as few commits as it can; per item
        None when written, else what refused it (StaleEpochError, ...). One account at most
        once: two statuses of one account in one commit would have no order."""
        accounts = [account for account, _ in items]
        check_one_each(accounts, ValueError)
        results: list[Exception | None] = [None] * len(items)

        def stage(batch: firestore.WriteBatch, i: int) -> bool:
            account, update = items[i]
            try:
                current = LeaseFence(self._client, account, self._versions).epoch(batch)
            except Exception as exc:  # a malformed lease: refused alone
                results[i] = exc
                return False
            if update.epoch < current:
                results[i] = StaleEpochError(
                    f"status of {account} not written: epoch {update.epoch} is older than the lease's {current}"
                )
                return False
            batch.set(
                self._client.collection(Collections.ACCOUNTS).document(account),
                status_fields(update),
                merge=True,
            )
            return True

        def alone(i: int) -> None:  # with retries, reading the lease
            try:
                self.write_sync(*items[i])
            except Exception as exc:
                results[i] = exc

        # Any error splits (a changed lease, or a transient one): alone, a write retries.
        self.commits += commit_in_halves(
            self._client, range(len(items)), stage, lambda i, _: None, alone, conflicts=(Exception,)
        )
        return results

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
