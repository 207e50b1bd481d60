"""Which accounts should be driven: `accounts/{id}` with `desired: active`.

One query listener keeps the set current; `refresh` re-reads it (the listener
can stop silently after hours: NOTES.md) and the placement loop calls it now
and then. The set can miss accounts: a refresh's answer is older than a
snapshot that arrives while it reads, and under write load the emulator's
listener was seen to leave activated accounts out of its snapshots for minutes
(python-firestore #367: a reset can report documents removed). So the set is
good for claims, never proof that an account is no longer wanted:
`still_desired` asks the documents themselves before anything is released.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from wa_wire import Collections

DESIRED_ACTIVE = "active"


class FirestoreAccountDirectory:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._watch: Any = None
        self._snapshots = 0  # listener snapshots so far: a refresh that raced one is merged
        self.loaded = threading.Event()

    def _query(self) -> Any:
        accounts = self._client.collection(Collections.ACCOUNTS)
        return accounts.where(filter=FieldFilter("desired", "==", DESIRED_ACTIVE))

    def listen(self) -> None:
        self.stop()

        def on_snapshot(docs: list[Any], _changes: Any, _read_time: Any) -> None:
            with self._lock:
                self._active = {doc.id for doc in docs}
                self._snapshots += 1
            self.loaded.set()

        self._watch = self._query().on_snapshot(on_snapshot)

    def listening(self) -> bool:
        return self._watch is not None and bool(self._watch.is_active)

    def refresh(self) -> set[str]:
        with self._lock:
            seen = self._snapshots
        ids = {doc.id for doc in self._query().select([]).stream()}
        with self._lock:
            self._active = ids if self._snapshots == seen else ids | self._active
            ids = set(self._active)
        self.loaded.set()
        return ids

    def still_desired(self, accounts: Iterable[str]) -> set[str]:
        """Of `accounts`, those whose document says `desired: active` now (point reads; they rejoin the set)."""
        refs = [self._client.collection(Collections.ACCOUNTS).document(a) for a in accounts]
        if not refs:
            return set()
        wanted = {
            snap.id
            for snap in self._client.get_all(refs)
            if snap.exists and (snap.to_dict() or {}).get("desired") == DESIRED_ACTIVE
        }
        with self._lock:
            self._active |= wanted
        return wanted

    def desired(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None
