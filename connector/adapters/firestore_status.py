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
split in halves until the write that met it goes alone, reading the lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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


BATCH = 100
"""Statuses per commit: two writes each (the lease check and the status)."""

Queued = tuple[str, StatusUpdate, "asyncio.Future[None]"]


class FirestoreStatusWriter:
    def __init__(self, client: firestore.Client, versions: LeaseVersions | None = None) -> None:
        self._client = client
        self._versions = versions  # the lease store's: a write then checks the lease unread
        self._queue: list[Queued] = []
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0
        """Batches committed or tried by `write_many_sync` (not counting writes that went alone)."""

    async def write(self, account: str, update: StatusUpdate) -> None:
        """Written with whatever else is queued; raises what the write of this account raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((account, update, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._write_queued())
        await done

    async def _write_queued(self) -> None:
        taken: list[Queued] = []
        try:
            while self._queue:
                taken, self._queue = _one_per_account(self._queue)
                results = await asyncio.to_thread(self.write_many_sync, [(a, u) for a, u, _ in taken])
                for (_, _, done), result in zip(taken, results, strict=True):
                    if result is None:
                        done.set_result(None)
                    else:
                        done.set_exception(result)
        except Exception as exc:  # a bug: every caller hears of it
            for _, _, done in taken + self._queue:
                if not done.done():
                    done.set_exception(exc)
            self._queue = []
        finally:  # cancelled (shutdown): nobody waits forever
            for _, _, done in taken + self._queue:
                if not done.done():
                    done.cancel()

    def write_many_sync(self, items: Sequence[tuple[str, StatusUpdate]]) -> list[Exception | None]:
        """Each status as `write_sync` would write it, in as few commits as it can; per item
        None when written, else what refused it (StaleEpochError, ...). One account at most
        once: two statuses of one account in one commit would have no order."""
        accounts = [account for account, _ in items]
        if len(set(accounts)) != len(accounts):
            raise ValueError("an account appears twice in one batch of statuses")
        results: list[Exception | None] = [None] * len(items)
        self._commit_halving(list(range(len(items))), items, results)
        return results

    def _commit_halving(
        self, part: list[int], items: Sequence[tuple[str, StatusUpdate]], results: list[Exception | None]
    ) -> None:
        if len(part) == 1:
            account, update = items[part[0]]
            try:
                self.write_sync(account, update)
            except Exception as exc:
                results[part[0]] = exc
            return
        batch, staged = self._client.batch(), []
        for i in part:
            account, update = items[i]
            try:
                current = LeaseFence(self._client, account, self._versions).epoch(batch)
            except Exception as exc:  # a malformed lease: refused alone
                results[i] = exc
                continue
            if update.epoch < current:
                results[i] = StaleEpochError(
                    f"status of {account} not written: epoch {update.epoch} is older than the lease's {current}"
                )
                continue
            batch.set(
                self._client.collection(Collections.ACCOUNTS).document(account),
                status_fields(update),
                merge=True,
            )
            staged.append(i)
        if not staged:
            return
        try:
            self.commits += 1
            batch.commit()
        except Exception:  # a changed lease (or a transient error): halves, then alone with retries
            half = len(staged) // 2
            for piece in (staged[:half], staged[half:]):
                if piece:
                    self._commit_halving(piece, items, results)

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


def _one_per_account(queue: list[Queued]) -> tuple[list[Queued], list[Queued]]:
    """The next batch: at most `BATCH` statuses, one per account, in queue order; the rest
    (later statuses of the same accounts among them) stays queued in order."""
    taken: list[Queued] = []
    rest: list[Queued] = []
    seen: set[str] = set()
    for item in queue:
        if item[0] in seen or len(taken) >= BATCH:
            rest.append(item)
        else:
            taken.append(item)
        seen.add(item[0])
    return taken, rest
