"""Which accounts should be driven: `accounts/{id}` with `desired: active`.

One query listener keeps the set current; `refresh` re-reads it (the listener
can stop silently after hours: NOTES.md) and the placement loop calls it now
and then. A refresh never overwrites a listener snapshot that arrived while it
was reading: its answer is then the older one, and taking it made the daemon
release accounts activated meanwhile as "not desired" (seen with 200 accounts
activated in batches: a pairing lost its lease, the account fell to needs_qr).
"""

from __future__ import annotations

import threading
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
        self._snapshots = 0  # listener snapshots so far: a refresh that raced one is dropped
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
            if self._snapshots == seen:
                self._active = ids
            ids = set(self._active)
        self.loaded.set()
        return ids

    def desired(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None
