"""Optimistic writes: read without locks, commit a batch whose preconditions say
"nothing I read has changed", and read again on a conflict.

Firestore's server client runs transactions pessimistically: each read locks
its document until commit or rollback. A connector killed between the two
leaves those locks until the transaction expires; measured on the emulator, a
plain write to such a document waits ~60 s (2 s lock timeouts, over and over).
A standby taking over a killed host's leases waited exactly that. A batch
commit holds no lock past its own request, so nothing a dead process started
can block the living.

The fence on `leases/{id}` is a write of the lease's own epoch with the
lease's update_time as precondition: Firestore leaves update_time unchanged
when a write changes nothing (WriteResult.update_time), so the check neither
moves the lease nor disturbs the holder's renewals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from connector.errors import KeeperError
from connector.lease_record import MISSING_EPOCH, LeaseError, LeaseRecord, check_id, epoch_of
from wa_wire.names import Collections

log = logging.getLogger("wa_keeper.firestore")

T = TypeVar("T")
ATTEMPTS = 8

CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound)
"""What a commit raises when a precondition no longer holds: read again and redo."""


class WriteConflictError(KeeperError):
    """Every attempt met a concurrent change (transient: firestore_retry treats it as contention)."""


def guard(client: firestore.Client, snapshot: Any) -> Any:
    """The write option that fails the commit when the document changed (or appeared) since `snapshot`."""
    if snapshot.exists:
        return client.write_option(last_update_time=snapshot.update_time)
    return client.write_option(exists=False)


def verify(batch: firestore.WriteBatch, client: firestore.Client, snapshot: Any, field: str) -> None:
    """Add a write that changes nothing but fails the commit if the document changed since `snapshot`.

    An existing document gets `field` rewritten with its own value; a missing one a
    delete that requires it to be missing.
    """
    if snapshot.exists:
        value = (snapshot.to_dict() or {}).get(field)
        batch.update(snapshot.reference, {field: value}, option=guard(client, snapshot))
    else:
        batch.delete(snapshot.reference, option=client.write_option(exists=False))


def optimistic(client: firestore.Client, body: Callable[[firestore.WriteBatch], T]) -> tuple[T, list[Any]]:
    """Run `body` (plain reads, then writes guarded by `guard`/`verify` added to the batch) and
    commit; on a conflict run it again on fresh reads. Returns body's value and the write results.

    `body` may raise to refuse (a stale epoch, say); nothing is committed then.
    """
    for attempt in range(1, ATTEMPTS + 1):
        batch = client.batch()
        value = body(batch)
        if len(batch) == 0:  # nothing to write: nothing to commit
            return value, []
        try:
            results = batch.commit()
        except CONFLICTS as exc:
            log.debug("optimistic write conflict (attempt %d): %s", attempt, exc)
            continue
        return value, list(results)
    raise WriteConflictError(f"still conflicting after {ATTEMPTS} attempts")


def lease_ref(client: firestore.Client, account: str) -> firestore.DocumentReference:
    return client.collection(Collections.LEASES).document(check_id("account", account))


def fence_on(batch: firestore.WriteBatch, client: firestore.Client, account: str, lease: Any) -> int:
    """The epoch of a lease snapshot the caller read (a missing lease is epoch 0); the batch
    fails if the lease changes before it commits. The caller compares and refuses."""
    verify(batch, client, lease, "epoch")
    return epoch_of(account, lease.to_dict() if lease.exists else None)


def fenced_epoch(batch: firestore.WriteBatch, client: firestore.Client, account: str) -> int:
    """Read `leases/{account}` and fence the batch on it (`fence_on`)."""
    return fence_on(batch, client, account, lease_ref(client, account).get())


@dataclass(frozen=True)
class KnownLease:
    """A lease as this process last read or wrote it, with the document's update_time."""

    record: LeaseRecord | None  # None: the document did not exist
    update_time: Any  # None when the document did not exist

    @property
    def epoch(self) -> int:
        return MISSING_EPOCH if self.record is None else self.record.epoch


class LeaseVersions:
    """The newest `KnownLease` of each account, shared by the lease store (which fills it
    from its reads and writes) and the writers fenced on leases (which then check the lease
    without reading it: one round trip less). An entry gone stale costs one conflict and a
    read, never a wrong write: the check is a precondition on update_time."""

    def __init__(self) -> None:
        self._known: dict[str, KnownLease] = {}

    def get(self, account: str) -> KnownLease | None:
        return self._known.get(account)

    def put(self, account: str, known: KnownLease) -> None:
        self._known[account] = known

    def forget(self, account: str) -> None:
        self._known.pop(account, None)

    def put_snapshot(self, account: str, snapshot: Any) -> KnownLease:
        known = KnownLease(
            LeaseRecord.from_fields(account, snapshot.to_dict() or {}) if snapshot.exists else None,
            snapshot.update_time if snapshot.exists else None,
        )
        self._known[account] = known
        return known


class LeaseFence:
    """The lease check of one fenced write. Its first attempt trusts `versions` (no read);
    after a conflict, and without a known version, it reads the lease (and remembers it)."""

    def __init__(self, client: firestore.Client, account: str, versions: LeaseVersions | None) -> None:
        self._client, self._account, self._versions = client, account, versions
        self._trust = versions is not None

    def epoch(self, batch: firestore.WriteBatch) -> int:
        """The lease's epoch; `batch` fails if the lease changes before it commits."""
        known = self._versions.get(self._account) if self._versions is not None and self._trust else None
        self._trust = False
        ref = lease_ref(self._client, self._account)
        if known is not None:
            if known.update_time is None:
                batch.delete(ref, option=self._client.write_option(exists=False))
            else:
                batch.update(
                    ref,
                    {"epoch": known.epoch},
                    option=self._client.write_option(last_update_time=known.update_time),
                )
            return known.epoch
        snapshot = ref.get()
        current = fence_on(batch, self._client, self._account, snapshot)
        if self._versions is not None:
            try:
                self._versions.put_snapshot(self._account, snapshot)
            except LeaseError:  # a valid epoch in an otherwise malformed lease: not remembered
                self._versions.forget(self._account)
        return current


def read_together(
    client: firestore.Client, refs: list[firestore.DocumentReference], fields: list[str] | None = None
) -> list[Any]:
    """Snapshots of `refs` in their order, in one round trip (only `fields` of each, when given)."""
    by_path = {snap.reference.path: snap for snap in client.get_all(refs, field_paths=fields)}
    return [by_path[ref.path] for ref in refs]
