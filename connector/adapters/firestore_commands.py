"""`commands/{id}` in Firestore: one query listener, claims fenced by the lease epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from connector.adapters.firestore_cas import fenced_epoch, guard, optimistic
from connector.adapters.firestore_retry import retry_contended
from connector.clock import Clock
from connector.inbox import ClaimRefused
from connector.ports import PendingCommand
from wa_wire import Collections, Command, CommandStatus, WireError, decode
from wa_wire.codec import parse_timestamp, utc_timestamp

IN_QUERY_LIMIT = 30  # Firestore's limit of values in an `in` filter


def to_pending(command_id: str, data: dict[str, Any]) -> PendingCommand | None:
    """A valid pending command, or None (malformed documents are skipped, not fatal)."""
    try:
        command = decode(Command, data)
    except WireError:
        return None
    if command.status is not CommandStatus.PENDING:
        return None
    generation = command.params.get("generation")
    return PendingCommand(
        command_id=command_id,
        account_id=command.account_id,
        action=command.action,
        generation=generation if isinstance(generation, int) else None,
        expires_at=command.expires_at,
    )


class FirestoreCommandStore:
    def __init__(self, client: firestore.Client, clock: Clock) -> None:
        self._client = client
        self._clock = clock
        self._watch: Any = None

    def _commands(self) -> Any:
        return self._client.collection(Collections.COMMANDS)

    def listen(self, on_pending: Callable[[PendingCommand], None]) -> None:
        self.stop_listening()

        def on_snapshot(docs: list[Any], _changes: Any, _read_time: Any) -> None:
            for doc in docs:
                pending = to_pending(doc.id, doc.to_dict() or {})
                if pending is not None:
                    on_pending(pending)

        query = self._commands().where(filter=FieldFilter("status", "==", CommandStatus.PENDING.value))
        self._watch = query.on_snapshot(on_snapshot)

    def listening(self) -> bool:
        return self._watch is not None and bool(self._watch.is_active)

    def stop_listening(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None

    def pending(self, accounts: Sequence[str]) -> list[PendingCommand]:
        found: list[PendingCommand] = []
        for start in range(0, len(accounts), IN_QUERY_LIMIT):
            batch = list(accounts[start : start + IN_QUERY_LIMIT])
            query = (
                self._commands()
                .where(filter=FieldFilter("status", "==", CommandStatus.PENDING.value))
                .where(filter=FieldFilter("account_id", "in", batch))
            )
            for doc in query.stream():
                pending = to_pending(doc.id, doc.to_dict() or {})
                if pending is not None:
                    found.append(pending)
        return found

    @retry_contended
    def claim(self, command_id: str, connector_id: str, epoch: int) -> None:
        ref = self._commands().document(command_id)
        now = self._clock.now()

        def body(batch: firestore.WriteBatch) -> bool:
            snap = ref.get()
            data = snap.to_dict() if snap.exists else None
            if data is None:
                raise ClaimRefused(f"command {command_id} is not pending")
            mine = data.get("claimed_by") == connector_id and data.get("claimed_epoch") == epoch
            if data.get("status") == CommandStatus.CLAIMED.value and mine:
                return True  # a retry of a claim that committed but whose answer was lost
            if data.get("status") != CommandStatus.PENDING.value:
                raise ClaimRefused(f"command {command_id} is not pending")
            if parse_timestamp(str(data.get("expires_at"))) <= now:
                expired = {"status": CommandStatus.EXPIRED.value, "finished_at": utc_timestamp(now)}
                batch.update(ref, expired, option=guard(self._client, snap))
                return False
            current = fenced_epoch(batch, self._client, str(data.get("account_id")))
            if epoch != current:
                raise ClaimRefused(f"command {command_id}: epoch {epoch} is not the lease's {current}")
            claimed = {
                "status": CommandStatus.CLAIMED.value,
                "claimed_by": connector_id,
                "claimed_epoch": epoch,
            }
            batch.update(ref, claimed, option=guard(self._client, snap))
            return True

        claimed, _ = optimistic(self._client, body)
        if not claimed:
            raise ClaimRefused(f"command {command_id} expired")

    @retry_contended
    def finish(self, command_id: str, connector_id: str, ok: bool, message: str) -> None:
        ref = self._commands().document(command_id)
        now = utc_timestamp(self._clock.now())

        def body(batch: firestore.WriteBatch) -> None:
            snap = ref.get()
            data = snap.to_dict() if snap.exists else {}
            if (data or {}).get("claimed_by") != connector_id:
                raise ClaimRefused(f"command {command_id} is not claimed by {connector_id}")
            status = CommandStatus.DONE if ok else CommandStatus.FAILED
            result = {"ok": ok, "message": message[:2000]}
            batch.update(
                ref,
                {"status": status.value, "result": result, "finished_at": now},
                option=guard(self._client, snap),
            )

        optimistic(self._client, body)
