"""In-memory `accounts/{id}` status documents, with the same fencing as Firestore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.ports import StaleEpochError, StatusUpdate, check_one_each
from wa_wire import AccountStatus


class MemoryStatusWriter:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.lease_epochs: dict[str, int] = {}
        self.history: list[tuple[str, StatusUpdate]] = []

    async def write(self, account: str, update: StatusUpdate) -> None:
        self.write_sync(account, update)

    def write_many_sync(self, items: Sequence[tuple[str, StatusUpdate]]) -> list[Exception | None]:
        accounts = [account for account, _ in items]
        check_one_each(accounts, ValueError)
        results: list[Exception | None] = []
        for account, update in items:
            try:
                self.write_sync(account, update)
            except StaleEpochError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def write_sync(self, account: str, update: StatusUpdate) -> None:
        current = self.lease_epochs.get(account, 0)
        if update.epoch < current:
            raise StaleEpochError(
                f"status of {account} not written: epoch {update.epoch} is older than the lease's {current}"
            )
        doc = self.docs.setdefault(account, {})
        doc.update(
            status=update.status.value,
            status_reason=update.reason[:2000],
            holder=update.holder,
            lease_epoch=update.epoch,
        )
        if update.qr is not None and update.status is AccountStatus.PAIRING:
            doc["qr"] = {"code": update.qr[0], "expires_at": update.qr[1]}
        else:
            doc.pop("qr", None)
        if update.jid is not None:
            doc["jid"] = update.jid
        if update.connected_at is not None:
            doc["last_connected_at"] = update.connected_at
        self.history.append((account, update))
