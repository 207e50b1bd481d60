"""Which accounts should be driven: `accounts/{id}` with `desired: active`.

Read by a query now and then (`refresh`, from the placement loop) and by point
reads (`still_desired`), not by a listener: a listener on `accounts` would
receive every status and backup write of every account on every connector (a
billed read each on Firestore; in the emulator each such write became several
times slower per listener). What must be quick does not wait for a refresh: a
pending command for an unknown account makes the daemon read that document at
once, and a released account reaches the next holder as a handoff hint
(connector/adapters/firestore_hints.py). The set is good for claims, never proof
that an account is no longer wanted: `still_desired` asks the documents
themselves before anything is released.

A listing is billed one read per account; a count of the same query, one read per
1,000. So the daemon counts often and lists when the count differs from the set's
size, or every `DaemonConfig.list_desired_every_s` in any case (an account in and
another out between two counts keep the size).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from wa_wire import Collections

DESIRED_ACTIVE = "active"


def needs_listing(since_listed_s: float, full_every_s: float, counted: int | None, known: int) -> bool:
    """Whether to list the desired set again: never listed yet or listed `full_every_s` ago,
    or its count (None: not counted) differs from the size of the set we have."""
    return since_listed_s >= full_every_s or counted is None or counted != known


class FirestoreAccountDirectory:
    """The desired set: the last refresh, mended by point reads since."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._desired: set[str] = set()
        self._read_during_refresh: dict[str, bool] | None = None  # point reads while a refresh runs
        self.loaded = threading.Event()

    def _query(self) -> Any:
        accounts = self._client.collection(Collections.ACCOUNTS)
        return accounts.where(filter=FieldFilter("desired", "==", DESIRED_ACTIVE))

    def refresh(self) -> set[str]:
        """Query the whole set again. A point read that answered while the query ran is
        newer than the query's answer for that account, and wins."""
        with self._lock:
            self._read_during_refresh = {}
        try:
            ids = {doc.id for doc in self._query().select([]).stream()}
        finally:
            with self._lock:
                newer, self._read_during_refresh = self._read_during_refresh or {}, None
        with self._lock:
            self._desired = (ids - {a for a, wanted in newer.items() if not wanted}) | {
                a for a, wanted in newer.items() if wanted
            }
        self.loaded.set()
        return self.desired()

    def count(self) -> int:
        """How many accounts say `desired: active` now (an aggregation: one billed read per
        1,000 of them)."""
        return int(self._query().count().get()[0][0].value)

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
            self._desired = (self._desired - asked) | wanted
            if self._read_during_refresh is not None:
                self._read_during_refresh.update({a: a in wanted for a in asked})
        return wanted

    def desired(self) -> set[str]:
        with self._lock:
            return set(self._desired)
