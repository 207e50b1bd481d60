"""In-memory `commands/{id}` with the Firestore adapter's semantics (tests, demos)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from connector.adapters.firestore_commands import to_pending
from connector.clock import Clock
from connector.inbox import ClaimRefused
from connector.ports import PendingCommand
from wa_wire import CommandStatus
from wa_wire.codec import parse_timestamp, utc_timestamp


class MemoryCommandStore:
    def __init__(self, clock: Clock) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.lease_epochs: dict[str, int] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self._listener: Callable[[PendingCommand], None] | None = None
        self.listener_alive = True

    def add(self, command_id: str, data: dict[str, Any]) -> None:
        """What functions or the CLI do: create a command (the listener hears of it)."""
        with self._lock:
            self.docs[command_id] = dict(data)
        pending = to_pending(command_id, data)
        if pending is not None and self._listener is not None and self.listener_alive:
            self._listener(pending)

    def listen(self, on_pending: Callable[[PendingCommand], None]) -> None:
        self._listener = on_pending
        self.listener_alive = True
        for command_id, data in list(self.docs.items()):
            pending = to_pending(command_id, data)
            if pending is not None:
                on_pending(pending)

    def listening(self) -> bool:
        return self._listener is not None and self.listener_alive

    def stop_listening(self) -> None:
        self._listener = None

    def pending(self, accounts: Sequence[str]) -> list[PendingCommand]:
        with self._lock:
            items = list(self.docs.items())
        found = [to_pending(cid, data) for cid, data in items if data.get("account_id") in accounts]
        return [p for p in found if p is not None]

    def claim(self, command_id: str, connector_id: str, epoch: int) -> None:
        now = self._clock.now()
        with self._lock:
            data = self.docs.get(command_id)
            if data is None:
                raise ClaimRefused(f"command {command_id} is not pending")
            mine = data.get("claimed_by") == connector_id and data.get("claimed_epoch") == epoch
            if data.get("status") == CommandStatus.CLAIMED.value and mine:
                return
            if data.get("status") != CommandStatus.PENDING.value:
                raise ClaimRefused(f"command {command_id} is not pending")
            if parse_timestamp(str(data["expires_at"])) <= now:
                data.update(status=CommandStatus.EXPIRED.value, finished_at=utc_timestamp(now))
                raise ClaimRefused(f"command {command_id} expired")
            current = self.lease_epochs.get(str(data["account_id"]), 0)
            if epoch != current:
                raise ClaimRefused(f"command {command_id}: epoch {epoch} is not the lease's {current}")
            data.update(status=CommandStatus.CLAIMED.value, claimed_by=connector_id, claimed_epoch=epoch)

    def finish(self, command_id: str, connector_id: str, ok: bool, message: str) -> None:
        with self._lock:
            data = self.docs.get(command_id, {})
            if data.get("claimed_by") != connector_id:
                raise ClaimRefused(f"command {command_id} is not claimed by {connector_id}")
            data.update(
                status=(CommandStatus.DONE if ok else CommandStatus.FAILED).value,
                result={"ok": ok, "message": message[:2000]},
                finished_at=utc_timestamp(self._clock.now()),
            )
