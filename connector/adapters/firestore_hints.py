"""The real `HandoffHints`: one document per connector, `handoffs/{connector}`.

Why not a listener on `accounts` (watching for `unattended`): such a listener
receives every status and backup write of every account, on every connector
(each a billed read on Firestore), and in the emulator each of those writes
became several times slower per listener (measured: 2 listeners on 200
accounts, about 8x). A single-document listener receives only its own hints.
A releasing connector adds the accounts to the hint document of each other
live connector; the receiver reads those leases at once and clears what it saw.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from connector.lease_record import LeaseError, check_id
from wa_wire import Collections

log = logging.getLogger("wa_keeper.hints")


def hinted_accounts(doc_id: str, data: dict[str, Any] | None) -> list[str]:
    """The valid account ids of a hint document; what is malformed is logged and skipped."""
    if not data:
        return []
    accounts = data.get("accounts", [])
    if not isinstance(accounts, list):
        log.warning(
            "%s/%s: field accounts is %r, expected a list of account ids",
            Collections.HANDOFFS,
            doc_id,
            accounts,
        )
        return []
    valid = []
    for account in accounts:
        try:
            valid.append(check_id("account", account))
        except LeaseError as exc:
            log.warning("%s/%s: ignored a hint: %s", Collections.HANDOFFS, doc_id, exc)
    return sorted(set(valid))


class FirestoreHandoffHints:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._watch: Any = None

    def _doc(self, connector: str) -> firestore.DocumentReference:
        return self._client.collection(Collections.HANDOFFS).document(check_id("connector id", connector))

    def send(self, to: Sequence[str], accounts: Sequence[str]) -> None:
        ids = [check_id("account", a) for a in accounts]
        if not to or not ids:
            return
        batch = self._client.batch()
        for connector in to:
            fields = {"accounts": firestore.ArrayUnion(ids), "updated_at": firestore.SERVER_TIMESTAMP}
            batch.set(self._doc(connector), fields, merge=True)
        batch.commit()

    def listen(self, me: str, on_hint: Callable[[list[str]], None]) -> None:
        self.stop()
        doc = self._doc(me)

        def on_snapshot(docs: list[Any], _changes: Any, _read_time: Any) -> None:
            try:
                for snap in docs:
                    accounts = hinted_accounts(snap.id, snap.to_dict() if snap.exists else None)
                    if not accounts:
                        continue
                    on_hint(accounts)
                    with contextlib.suppress(gexc.GoogleAPIError):  # cleared by the next one, then
                        doc.update({"accounts": firestore.ArrayRemove(accounts)})
            except Exception:  # raised into the client's watch thread, it would end the listener
                log.exception("%s/%s: a hint snapshot could not be handled", Collections.HANDOFFS, me)

        self._watch = doc.on_snapshot(on_snapshot)

    def listening(self) -> bool:
        return self._watch is not None and bool(self._watch.is_active)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None
