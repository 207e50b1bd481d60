"""Which accounts should be driven: `accounts/{id}` with `desired: active`.

One query listener keeps the set current; `refresh` re-reads it (the listener
can stop silently after hours: NOTES.md) and the placement loop calls it now
and then. Under write load the emulator's listener was seen to leave activated
accounts out of its snapshots for minutes (python-firestore #367: a reset can
report documents removed), so what a refresh or a point read confirmed is kept
apart from the listener's view. The set is good for claims, never proof that
an account is no longer wanted: `still_desired` asks the documents themselves
before anything is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from wa_wire import AccountStatus, Collections

DESIRED_ACTIVE = "active"


class FirestoreAccountDirectory:
    """The desired set: what the listener says, plus what queries and point reads confirmed.

    Kept as two sets because the listener's snapshots replace its whole view and,
    in the emulator under load, that view can lack an account for minutes: an
    account a refresh or a point read found must survive those snapshots. It
    leaves when a point read or a refresh says it is not desired, or when the
    listener reports it removed (the point read before any release then decides).
    """

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._listened: set[str] = set()
        self._confirmed: set[str] = set()
        self._snapshots = 0  # listener snapshots so far: one during a refresh is newer than it
        self._watch: Any = None
        self.loaded = threading.Event()
        self.on_unattended: Callable[[list[str]], None] | None = None
        """Called from the listener's thread with accounts whose document changed to status
        `unattended` (a holder released them): a hint to read their leases now."""

    def _query(self) -> Any:
        accounts = self._client.collection(Collections.ACCOUNTS)
        return accounts.where(filter=FieldFilter("desired", "==", DESIRED_ACTIVE))

    def listen(self) -> None:
        self.stop()

        def on_snapshot(docs: list[Any], changes: list[Any], _read_time: Any) -> None:
            self.take_snapshot({doc.id for doc in docs})
            released = [
                change.document.id
                for change in changes
                if (change.document.to_dict() or {}).get("status") == AccountStatus.UNATTENDED.value
            ]
            if released and self.on_unattended is not None:
                self.on_unattended(released)

        self._watch = self._query().on_snapshot(on_snapshot)

    def take_snapshot(self, ids: set[str]) -> None:
        """The listener's whole view; what it reports removed leaves the confirmed set too."""
        with self._lock:
            self._confirmed -= self._listened - ids
            self._listened = set(ids)
            self._snapshots += 1
        self.loaded.set()

    def listening(self) -> bool:
        return self._watch is not None and bool(self._watch.is_active)

    def refresh(self) -> set[str]:
        """Query the whole set again (the listener can stop silently after hours: NOTES.md).

        The answer replaces everything, unless a snapshot arrived while it was read:
        that snapshot is newer, so the listener's view stays beside it.
        """
        with self._lock:
            seen = self._snapshots
        ids = {doc.id for doc in self._query().select([]).stream()}
        with self._lock:
            self._confirmed = ids
            if self._snapshots == seen:
                self._listened = set()
        self.loaded.set()
        return self.desired()

    def still_desired(self, accounts: Iterable[str]) -> set[str]:
        """Of `accounts`, those whose document says `desired: active` now (point reads); the
        answer updates the set both ways."""
        asked = set(accounts)
        refs = [self._client.collection(Collections.ACCOUNTS).document(a) for a in sorted(asked)]
        if not refs:
            return set()
        wanted = {
            snap.id
            for snap in self._client.get_all(refs)
            if snap.exists and (snap.to_dict() or {}).get("desired") == DESIRED_ACTIVE
        }
        with self._lock:
            self._confirmed = (self._confirmed - asked) | wanted
        return wanted

    def desired(self) -> set[str]:
        with self._lock:
            return self._listened | self._confirmed

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None
