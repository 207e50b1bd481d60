"""The real `HandoffHints`: one document per connector, `handoffs/{connector}`.

Why not a listener on `accounts` (watching for `unattended`): such a listener
receives every status and backup write of every account, on every connector
(each a billed read on Firestore), and in the emulator each of those writes
became several times slower per listener (measured: 2 listeners on 200
accounts, about 8x). A single-document listener receives only its own hints.
A releasing connector adds the accounts to the hint document of each other
live connector; the receiver reads those leases at once and clears what it saw.

A release made cleanly (the old holder's last write done: nothing of its epoch
can land after it) is also listed under `clean`, with the lease as released and
its version: the receiver takes the lease without reading it first (its write is
on that version: if the lease moved meanwhile, the write fails and it reads),
and reads the newest backups ahead while it takes the lease at the next epoch
(connector/vault.py, `prefetch_newest`). Entries are removed exactly as seen, so
a hint added meanwhile stays, and a malformed one is cleared after one warning.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from connector.errors import KeeperError
from connector.lease_record import LeaseError, LeaseRecord, LeaseView, check_id
from connector.ports import CleanRelease, NewestBackup
from wa_wire import Collections

log = logging.getLogger("wa_keeper.hints")


def hinted_accounts(doc_id: str, data: dict[str, Any] | None) -> dict[str, CleanRelease | None]:
    """The valid hints of a hint document: account id -> its clean release (see `clean`), else
    None. What is malformed is logged and skipped (a malformed `backup` only drops the backup)."""
    where = f"{Collections.HANDOFFS}/{doc_id}"
    hinted: dict[str, CleanRelease | None] = {}
    for account in _entries(where, data, "accounts"):
        try:
            hinted[check_id("account", account)] = None
        except LeaseError as exc:
            log.warning("%s: ignored a hint: %s", where, exc)
    for entry in _entries(where, data, "clean"):
        try:
            view = _released_view(entry)
        except LeaseError as exc:
            log.warning("%s: ignored a clean-release hint: %s", where, exc)
            continue
        known = hinted.get(view.account)
        if known is None or known.lease.epoch() < view.epoch():
            hinted[view.account] = CleanRelease(view, _newest_backup(where, view, entry))
    return dict(sorted(hinted.items()))


def _newest_backup(where: str, view: LeaseView, entry: dict[str, Any]) -> NewestBackup | None:
    """`backup: {generation, lease_epoch}` of a clean release; absent or malformed: unknown."""
    backup = entry.get("backup")
    if backup is None:
        return None
    try:
        if not isinstance(backup, dict):
            raise KeeperError(f"expected a map, got {backup!r}")
        newest = NewestBackup(backup.get("generation"), backup.get("lease_epoch"))  # type: ignore[arg-type]
        if newest.lease_epoch > view.epoch():
            raise KeeperError(f"lease epoch {newest.lease_epoch} is after the release at {view.epoch()}")
    except KeeperError as exc:
        log.warning("%s: %s: ignored the newest backup of a clean release: %s", where, view.account, exc)
        return None
    return newest


def _released_view(entry: object) -> LeaseView:
    """`{account, lease: the lease's fields, version}` of a clean release, as a LeaseView."""
    if not isinstance(entry, dict):
        raise LeaseError(f"expected a map, got {entry!r}")
    account = check_id("account", entry.get("account"))
    lease, version = entry.get("lease"), entry.get("version")
    if not isinstance(lease, dict):
        raise LeaseError(f"{account}: lease is {lease!r}, expected a map")
    record = LeaseRecord.from_fields(account, lease)
    if record.holder is not None or record.epoch < 1:
        raise LeaseError(f"{account}: not a released lease (holder {record.holder!r}, epoch {record.epoch})")
    if not isinstance(version, str) or not version:
        raise LeaseError(f"{account}: version is {version!r}, expected a string")
    return LeaseView(account, record, server_now=None, version=version)


def _entries(where: str, data: dict[str, Any] | None, name: str) -> list[Any]:
    value = (data or {}).get(name, [])
    if isinstance(value, list):
        return value
    log.warning("%s: field %s is %r, expected a list", where, name, value)
    return []


def _clearing(data: dict[str, Any]) -> dict[str, Any]:
    """The update that removes every entry seen, valid or not (a later hint added meanwhile
    stays): a malformed entry is logged once, not at every snapshot."""
    update: dict[str, Any] = {}
    for name in ("accounts", "clean"):
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, list):
            if value:
                update[name] = firestore.ArrayRemove(value)
        else:
            update[name] = firestore.DELETE_FIELD
    return update


class Unheard:
    """What each snapshot of a hint document adds to what was heard: a hint added before our
    clear of the last one landed shows the entries already heard again."""

    def __init__(self) -> None:
        self._heard: set[tuple[str, str | None]] = set()

    def take(self, hinted: dict[str, CleanRelease | None]) -> dict[str, CleanRelease | None]:
        seen = {(a, None if c is None else c.lease.version) for a, c in hinted.items()}
        fresh = {
            a: c for a, c in hinted.items() if (a, None if c is None else c.lease.version) not in self._heard
        }
        self._heard = seen  # once cleared, an entry may be heard again
        return fresh


def _clean_entry(account: str, clean: CleanRelease | None) -> dict[str, Any] | None:
    """`{account, lease, version, backup?}` of a clean release (None: not one that can be hinted)."""
    view = None if clean is None else clean.lease
    if clean is None or view is None or view.record is None or view.version is None:
        return None
    entry: dict[str, Any] = {"account": account, "lease": view.record.to_fields(), "version": view.version}
    if clean.newest is not None:
        entry["backup"] = {"generation": clean.newest.generation, "lease_epoch": clean.newest.lease_epoch}
    return entry


class FirestoreHandoffHints:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._watch: Any = None
        self._clears: ThreadPoolExecutor | None = None
        self._heard_once = threading.Event()  # the listener's first snapshot came

    def _doc(self, connector: str) -> firestore.DocumentReference:
        return self._client.collection(Collections.HANDOFFS).document(check_id("connector id", connector))

    def send(self, to: Sequence[str], released: Mapping[str, CleanRelease | None]) -> None:
        hinted = {check_id("account", a): v for a, v in released.items()}
        targets = [check_id("connector id", c) for c in to]
        if not targets or not hinted:
            return
        clean = [entry for a, c in sorted(hinted.items()) if (entry := _clean_entry(a, c)) is not None]
        fields: dict[str, Any] = {"accounts": firestore.ArrayUnion(sorted(hinted))}
        if clean:
            fields["clean"] = firestore.ArrayUnion(clean)
        fields["updated_at"] = firestore.SERVER_TIMESTAMP
        batch = self._client.batch()
        for connector in targets:
            batch.set(self._doc(connector), fields, merge=True)
        batch.commit()

    def listen(self, me: str, on_hint: Callable[[dict[str, CleanRelease | None]], None]) -> None:
        self.stop()
        doc = self._doc(me)
        unheard = Unheard()
        # Clears go from a thread of their own: made in the listener's callback, each (a write,
        # a round trip) held up the next snapshot, the next hint, by as long (0.3-0.8 s under load).
        clears = self._clears = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wa-hints-clear")

        def clear(update: dict[str, Any]) -> None:
            with contextlib.suppress(gexc.GoogleAPIError):  # cleared by the next one, then
                doc.update(update)

        heard_once = self._heard_once = threading.Event()

        def on_snapshot(docs: list[Any], _changes: Any, _read_time: Any) -> None:
            heard_once.set()
            try:
                for snap in docs:
                    data = snap.to_dict() if snap.exists else None
                    fresh = unheard.take(hinted_accounts(snap.id, data) if data else {})
                    if not data:
                        continue
                    if fresh:
                        on_hint(fresh)
                    update = _clearing(data)
                    if update:
                        with contextlib.suppress(RuntimeError):  # stopped meanwhile
                            clears.submit(clear, update)
            except Exception:  # raised into the client's watch thread, it would end the listener
                log.exception("%s/%s: a hint snapshot could not be handled", Collections.HANDOFFS, me)

        self._watch = doc.on_snapshot(on_snapshot)

    def listening(self) -> bool:
        """The listener runs and has had its first snapshot: from then on every write to the
        document reaches it (a hint written while the listen was being set up could be missed:
        twice, a contract test on a freshly started emulator never heard one)."""
        return self._watch is not None and bool(self._watch.is_active) and self._heard_once.is_set()

    def stop(self) -> None:
        if self._clears is not None:
            self._clears.shutdown(wait=False)
            self._clears = None
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None
