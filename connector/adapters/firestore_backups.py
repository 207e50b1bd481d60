"""The real `BackupStore`: manifests and chunks in Firestore (DESIGN.md Part 1).

Layout: `accounts/{id}/backups/{generation}` holds a manifest with chunk 0 inline
(field `head`), its `chunks/{index}` subcollection the other encrypted chunks
(field `data`, at most 900 KiB each). A session that fits one chunk thus
restores with a single document read; manifests written before `head` existed
keep chunk 0 in `chunks/0`, and both layouts read back. Generation
numbers come from `accounts/{id}.backup_reserved_generation`, bumped by a fenced
compare-and-set, so two writers can never put chunks under the same number (a
stale writer's chunks would otherwise mix into a live generation). The manifest
is written last, in a batch that requires `leases/{id}` unchanged since its epoch
was read and refuses a stale caller (firestore_cas: no locks); it also updates the
account's `backup` summary. A one-chunk session needs no chunk documents, so
`commit_next` bumps the number and writes the manifest in that same batch.

`stats` counts documents read and written and the blob bytes moved (the bench
prints them; Firestore bills per document).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from connector.adapters.firestore_cas import (
    fence_on,
    fenced_epoch,
    guard,
    lease_ref,
    optimistic,
    read_together,
    verify,
)
from connector.adapters.firestore_halves import commit_in_halves
from connector.errors import KeeperError
from connector.lease_record import epoch_of
from connector.ports import Manifest, NextCommit, StaleEpochError, check_next_manifest, check_one_each
from wa_wire.names import Collections, SubCollections

log = logging.getLogger(__name__)

RESERVED_FIELD = "backup_reserved_generation"
SUMMARY_FIELD = "backup"
MAX_BATCH_BYTES = 3840 * 1024
"""Chunks per commit, capped by bytes: Firestore takes 10 MiB per request, the emulator 4 MiB."""
GET_ALL_BATCH = 300
"""Documents per batched read."""
NEXT_BATCH = 150
"""Backups per `commit_next_many` commit: three writes each, within Firestore's 500."""


class BadManifestError(KeeperError):
    """A manifest document does not have the contract's fields."""


@dataclass
class IoStats:
    """Documents read and written, blob bytes moved; safe to update from several threads."""

    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, reads: int = 0, writes: int = 0, bytes_read: int = 0, bytes_written: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes
            self.bytes_read += bytes_read
            self.bytes_written += bytes_written


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "generation": int,
    "created_at": datetime,
    "connector_id": str,
    "lease_epoch": int,
    "format": int,
    "key_id": str,
    "wrapped_key": bytes,
    "size": int,
    "sha256": str,
    "chunk_count": int,
    "taken_while_connected": bool,
    "good": bool,
    "jid": str,
}


HEAD_FIELD = "head"
"""Chunk 0, inline in the manifest document."""


def manifest_fields(manifest: Manifest) -> dict[str, Any]:
    fields = {name: getattr(manifest, name) for name in _FIELD_TYPES}
    if manifest.head is not None:
        fields[HEAD_FIELD] = manifest.head
    return fields


def manifest_from_fields(account: str, doc_id: str, data: dict[str, Any]) -> Manifest:
    """Validate a manifest document; a missing or ill-typed field raises BadManifestError."""
    for name, kind in _FIELD_TYPES.items():
        value = data.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadManifestError(f"{account}: manifest {doc_id}: field {name} missing or not {kind}")
    if str(data["generation"]) != doc_id or data["chunk_count"] < 1:
        raise BadManifestError(f"{account}: manifest {doc_id}: generation or chunk_count inconsistent")
    head = data.get(HEAD_FIELD)
    if head is not None and not isinstance(head, bytes):
        raise BadManifestError(f"{account}: manifest {doc_id}: field {HEAD_FIELD} is not bytes")
    return Manifest(account_id=account, head=head, **{name: data[name] for name in _FIELD_TYPES})


def summary_fields(manifest: Manifest) -> dict[str, Any]:
    """`accounts/{id}.backup`: `{generation, at, size, sha256, good}` of the newest backup."""
    return {
        "generation": manifest.generation,
        "at": manifest.created_at,
        "size": manifest.size,
        "sha256": manifest.sha256,
        "good": manifest.good,
    }


@dataclass(frozen=True)
class _Next:
    """A one-chunk generation ready to commit, with the lease and account snapshots it rests on."""

    manifest: Manifest
    lease: Any
    snap: Any
    fields: dict[str, Any]
    gap: bool

    @property
    def size(self) -> int:
        return len(self.manifest.wrapped_key) + len(self.manifest.head or b"")


def _by_bytes(staged: list[tuple[int, _Next]]) -> list[list[tuple[int, _Next]]]:
    """Consecutive parts of at most `MAX_BATCH_BYTES` (one item over it goes alone)."""
    parts: list[list[tuple[int, _Next]]] = []
    size = 0
    for item in staged:
        if not parts or size + item[1].size > MAX_BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += item[1].size
    return parts


class FirestoreBackupStore:
    def __init__(self, client: firestore.Client) -> None:
        self._db = client
        self.stats = IoStats()
        self.commits = 0
        """Batches committed or tried by `commit_next_many` (not counting backups that went alone)."""

    # -- references ------------------------------------------------------------------

    def _account(self, account: str) -> firestore.DocumentReference:
        return self._db.collection(Collections.ACCOUNTS).document(account)

    def _lease(self, account: str) -> firestore.DocumentReference:
        return self._db.collection(Collections.LEASES).document(account)

    def _backups(self, account: str) -> firestore.CollectionReference:
        backups: firestore.CollectionReference = self._account(account).collection(SubCollections.BACKUPS)
        return backups

    def _manifest(self, account: str, generation: int) -> firestore.DocumentReference:
        return self._backups(account).document(str(generation))

    def _chunk(self, account: str, generation: int, index: int) -> firestore.DocumentReference:
        chunks = self._manifest(account, generation).collection(SubCollections.CHUNKS)
        chunk: firestore.DocumentReference = chunks.document(str(index))
        return chunk

    def _fence(self, batch: firestore.WriteBatch, account: str, epoch: int, lease: Any = None) -> None:
        """Refuse (StaleEpochError) an epoch older than the lease's; the batch requires the lease
        unchanged. `lease`: a snapshot read with the caller's other reads (else read here)."""
        if lease is None:
            current = fenced_epoch(batch, self._db, account)
        else:
            current = fence_on(batch, self._db, account, lease)
        self.stats.add(reads=1, writes=1)
        if epoch < current:
            raise StaleEpochError(f"{account}: lease epoch {epoch} is older than the current {current}")

    def reserve_generation(self, account: str, epoch: int) -> int:
        ref = self._account(account)

        def reserve(batch: firestore.WriteBatch) -> int:
            lease, snap = read_together(self._db, [lease_ref(self._db, account), ref])
            self._fence(batch, account, epoch, lease)
            self.stats.add(reads=1, writes=1)
            last = (snap.to_dict() or {}).get(RESERVED_FIELD, 0) if snap.exists else 0
            generation = (last if isinstance(last, int) else 0) + 1
            if snap.exists:
                batch.update(ref, {RESERVED_FIELD: generation}, option=guard(self._db, snap))
            else:
                batch.create(ref, {RESERVED_FIELD: generation})
            return generation

        generation, _ = optimistic(self._db, reserve)
        return generation

    def commit_next(self, account: str, epoch: int, build: Callable[[int], Manifest]) -> NextCommit:
        """Two round trips: read the lease and the account together, then one batch that bumps
        the reserved number, creates the manifest, points the summary at it and checks the lease."""

        def write(batch: firestore.WriteBatch) -> _Next:
            lease, snap = read_together(self._db, [lease_ref(self._db, account), self._account(account)])
            self.stats.add(reads=2)
            staged = self._next(account, epoch, build, lease, snap)
            self._stage_next(batch, staged)
            return staged

        staged, _ = optimistic(self._db, write)
        self._count_next(staged)
        return NextCommit(staged.manifest, staged.gap)

    def commit_next_many(
        self, items: Sequence[tuple[str, int, Callable[[int], Manifest]]]
    ) -> list[NextCommit | Exception]:
        """Read every lease and account at once (per `NEXT_BATCH`), then commit the backups
        together (firestore_halves: a failing batch is read afresh once, as our own lease
        renewals change many leases at once, then split; an item alone in a failing one goes
        through `commit_next`, reading afresh)."""
        check_one_each([account for account, _, _ in items])
        results: list[NextCommit | Exception | None] = [None] * len(items)

        def read(group: Sequence[int]) -> list[tuple[int, _Next]]:
            """The items' writes on their lease and account as read now (refusals recorded)."""
            refs = [
                ref for i in group for ref in (lease_ref(self._db, items[i][0]), self._account(items[i][0]))
            ]
            snaps = read_together(self._db, refs)
            self.stats.add(reads=len(refs))
            staged: list[tuple[int, _Next]] = []
            for k, i in enumerate(group):
                account, epoch, build = items[i]
                try:
                    staged.append((i, self._next(account, epoch, build, snaps[2 * k], snaps[2 * k + 1])))
                except Exception as exc:  # a stale epoch, a bad manifest: refused alone
                    results[i] = exc
            return staged

        def refresh(part: Sequence[tuple[int, _Next]]) -> list[tuple[int, _Next]]:
            return read([i for i, _ in part])

        for start in range(0, len(items), NEXT_BATCH):
            staged = read(range(start, min(start + NEXT_BATCH, len(items))))

            def stage(batch: firestore.WriteBatch, item: tuple[int, _Next]) -> bool:
                self._stage_next(batch, item[1])
                return True

            def committed(item: tuple[int, _Next], _: list[Any]) -> None:
                self._count_next(item[1])
                results[item[0]] = NextCommit(item[1].manifest, item[1].gap)

            def alone(item: tuple[int, _Next]) -> None:
                account, epoch, build = items[item[0]]
                try:
                    results[item[0]] = self.commit_next(account, epoch, build)
                except Exception as exc:
                    results[item[0]] = exc

            for part in _by_bytes(staged):
                self.commits += commit_in_halves(self._db, part, stage, committed, alone, refresh=refresh)
        return [r if r is not None else KeeperError("backup not committed") for r in results]

    def _next(
        self, account: str, epoch: int, build: Callable[[int], Manifest], lease: Any, snap: Any
    ) -> _Next:
        """The next generation's writes on the lease and account as read (StaleEpochError when
        the lease has a newer epoch)."""
        current = epoch_of(account, lease.to_dict() if lease.exists else None)
        if epoch < current:
            raise StaleEpochError(f"{account}: lease epoch {epoch} is older than the current {current}")
        data = (snap.to_dict() or {}) if snap.exists else {}
        last = data.get(RESERVED_FIELD, 0)
        last = last if isinstance(last, int) and not isinstance(last, bool) else 0
        generation = last + 1
        manifest = check_next_manifest(build(generation), account, generation, epoch)
        fields: dict[str, Any] = {RESERVED_FIELD: generation}
        summary = data.get(SUMMARY_FIELD)
        newest = summary.get("generation", 0) if isinstance(summary, dict) else 0
        newest = newest if isinstance(newest, int) and not isinstance(newest, bool) else 0
        if newest < generation:
            fields[SUMMARY_FIELD] = summary_fields(manifest)
        return _Next(manifest, lease, snap, fields, gap=last > newest)

    def _stage_next(self, batch: firestore.WriteBatch, staged: _Next) -> None:
        """The lease check, the manifest (created: never twice), the account's number and summary."""
        manifest = staged.manifest
        verify(batch, self._db, staged.lease, "epoch")
        batch.create(self._manifest(manifest.account_id, manifest.generation), manifest_fields(manifest))
        account_ref = self._account(manifest.account_id)
        if staged.snap.exists:
            batch.update(account_ref, staged.fields, option=guard(self._db, staged.snap))
        else:
            batch.create(account_ref, staged.fields)

    def _count_next(self, staged: _Next) -> None:
        """Counted once committed: a batch split in halves, or a retry, stages the writes again."""
        self.stats.add(writes=3, bytes_written=staged.size)

    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        batch, batch_bytes = self._db.batch(), 0
        for index, chunk in enumerate(chunks, start):
            if batch_bytes and batch_bytes + len(chunk) > MAX_BATCH_BYTES:
                batch.commit()
                batch, batch_bytes = self._db.batch(), 0
            batch.set(self._chunk(account, generation, index), {"data": chunk})
            batch_bytes += len(chunk)
            self.stats.add(writes=1)
            self.stats.add(bytes_written=len(chunk))
        if batch_bytes or chunks:
            batch.commit()

    def commit(self, manifest: Manifest) -> None:
        """One batch: the manifest (created: never twice), the summary when newest, the lease check.

        No lock on the account document: its only other writer of `backup` is the
        policy's mark-good, and one holder commits one generation at a time.
        """
        account = manifest.account_id
        ref, account_ref = self._manifest(account, manifest.generation), self._account(account)

        def write(batch: firestore.WriteBatch) -> None:
            lease, existing, snap = read_together(self._db, [lease_ref(self._db, account), ref, account_ref])
            self._fence(batch, account, manifest.lease_epoch, lease)
            self.stats.add(reads=2)
            if existing.exists:
                raise KeeperError(f"{account}: generation {manifest.generation} already has a manifest")
            batch.create(ref, manifest_fields(manifest))
            summary = (snap.to_dict() or {}).get(SUMMARY_FIELD) if snap.exists else None
            newest = summary.get("generation", 0) if isinstance(summary, dict) else 0
            if not isinstance(newest, int) or newest < manifest.generation:
                batch.set(account_ref, {SUMMARY_FIELD: summary_fields(manifest)}, merge=True)
                self.stats.add(writes=1)
            self.stats.add(writes=1)
            self.stats.add(bytes_written=len(manifest.wrapped_key) + len(manifest.head or b""))

        optimistic(self._db, write)

    def _parsed(self, account: str, docs: Sequence[Any]) -> list[Manifest]:
        found = []
        for doc in docs:
            data = doc.to_dict() or {}
            try:
                found.append(manifest_from_fields(account, doc.id, data))
            except BadManifestError as exc:
                log.warning("skipping a bad manifest: %s", exc)
            head = data.get(HEAD_FIELD)
            self.stats.add(bytes_read=len(head) if isinstance(head, bytes) else 0)
        return found

    def manifests(self, account: str, limit: int | None = None) -> list[Manifest]:
        query = (
            self._backups(account)
            .select(list(_FIELD_TYPES))
            .order_by("generation", direction=firestore.Query.DESCENDING)
        )
        docs = list((query if limit is None else query.limit(limit)).stream())
        self.stats.add(reads=max(1, len(docs)))
        return self._parsed(account, docs)

    def manifest(self, account: str, generation: int) -> Manifest | None:
        snap = self._manifest(account, generation).get()
        self.stats.add(reads=1)
        found = self._parsed(account, [snap] if snap.exists else [])
        return found[0] if found else None

    def newest_good(self, account: str) -> Manifest | None:
        """One query (index: good, generation desc); a bad newest manifest falls back to the listing."""
        query = (
            self._backups(account)
            .where(filter=FieldFilter("good", "==", True))
            .order_by("generation", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        docs = list(query.stream())
        self.stats.add(reads=1)
        found = self._parsed(account, docs)
        return found[0] if found else None

    def newest(self, account: str) -> Manifest | None:
        query = self._backups(account).order_by("generation", direction=firestore.Query.DESCENDING).limit(1)
        docs = list(query.stream())
        self.stats.add(reads=1)
        found = self._parsed(account, docs)
        return found[0] if found else None

    def newest_many(self, accounts: Sequence[str]) -> dict[str, Manifest]:
        named: dict[str, int] = {}
        for start in range(0, len(accounts), GET_ALL_BATCH):
            refs = [self._account(a) for a in accounts[start : start + GET_ALL_BATCH]]
            for snap in self._db.get_all(refs, field_paths=[SUMMARY_FIELD]):
                self.stats.add(reads=1)
                summary = (snap.to_dict() or {}).get(SUMMARY_FIELD) if snap.exists else None
                generation = summary.get("generation") if isinstance(summary, dict) else None
                if isinstance(generation, int) and not isinstance(generation, bool) and generation > 0:
                    named[snap.id] = generation
        return self.manifests_named(named)

    def manifests_named(self, wanted: Mapping[str, int]) -> dict[str, Manifest]:
        found: dict[str, Manifest] = {}
        named = list(wanted.items())
        for start in range(0, len(named), GET_ALL_BATCH):
            refs = [self._manifest(a, g) for a, g in named[start : start + GET_ALL_BATCH]]
            for snap in self._db.get_all(refs):
                account = snap.reference.parent.parent.id
                for manifest in self._parsed(account, [snap] if snap.exists else []):
                    if manifest.generation == wanted.get(account):
                        found[account] = manifest
            self.stats.add(reads=len(refs))
        return found

    def _head(self, account: str, generation: int) -> bytes | None:
        snap = self._manifest(account, generation).get(field_paths=[HEAD_FIELD])
        self.stats.add(reads=1)
        head = (snap.to_dict() or {}).get(HEAD_FIELD) if snap.exists else None
        self.stats.add(bytes_read=len(head) if isinstance(head, bytes) else 0)
        return head if isinstance(head, bytes) else None

    def read_chunks(self, account: str, generation: int, count: int, start: int = 0) -> list[bytes | None]:
        """Chunk documents in one batch; chunk 0 from the manifest's `head` when it has one."""
        head = self._head(account, generation) if start == 0 else None
        indexes = [i for i in range(start, count) if not (i == 0 and head is not None)]
        by_id: dict[str, bytes | None] = {"0": head} if head is not None else {}
        refs = [self._chunk(account, generation, index) for index in indexes]
        for snap in self._db.get_all(refs) if refs else []:
            self.stats.add(reads=1)
            data = (snap.to_dict() or {}).get("data") if snap.exists else None
            by_id[snap.id] = data if isinstance(data, bytes) else None
            self.stats.add(bytes_read=len(data) if isinstance(data, bytes) else 0)
        return [by_id.get(str(index)) for index in range(start, count)]

    def mark_good(self, account: str, generation: int) -> bool:
        ref, account_ref = self._manifest(account, generation), self._account(account)

        def mark(batch: firestore.WriteBatch) -> bool:
            snap, account_snap = read_together(self._db, [ref, account_ref], ["good", SUMMARY_FIELD])
            self.stats.add(reads=2)
            if not snap.exists:
                return False
            if (snap.to_dict() or {}).get("good") is not True:  # a restored generation usually is
                batch.update(ref, {"good": True}, option=guard(self._db, snap))
                self.stats.add(writes=1)
            summary = (account_snap.to_dict() or {}).get(SUMMARY_FIELD) if account_snap.exists else None
            if (
                isinstance(summary, dict)
                and summary.get("generation") == generation
                and summary.get("good") is not True
            ):
                batch.update(
                    account_ref,
                    {SUMMARY_FIELD: {**summary, "good": True}},
                    option=guard(self._db, account_snap),
                )
                self.stats.add(writes=1)
            return True

        marked, _ = optimistic(self._db, mark)
        return marked

    def orphan_generations(self, account: str) -> list[int]:
        backups = self._backups(account)
        existing = {doc.id for doc in backups.select(["generation"]).stream()}
        listed = [ref.id for ref in backups.list_documents()]
        self.stats.add(reads=max(1, len(existing)) + max(1, len(listed)))
        return sorted(int(i) for i in listed if i.isdigit() and i not in existing)

    def _delete_chunks(self, manifest_ref: firestore.DocumentReference) -> None:
        refs = list(manifest_ref.collection(SubCollections.CHUNKS).list_documents())
        for start in range(0, len(refs), 400):
            batch = self._db.batch()
            for ref in refs[start : start + 400]:
                batch.delete(ref)
                self.stats.add(writes=1)
            batch.commit()

    def delete_generation(self, account: str, generation: int) -> None:
        """Manifest first: a crash halfway leaves orphan chunks, never a manifest without chunks."""
        account_ref = self._account(account)
        self._manifest(account, generation).delete()
        self.stats.add(writes=1)
        self._delete_chunks(self._manifest(account, generation))
        snap = account_ref.get()
        self.stats.add(reads=1)
        summary = (snap.to_dict() or {}).get(SUMMARY_FIELD) if snap.exists else None
        if isinstance(summary, dict) and summary.get("generation") == generation:
            rest = self.manifests(account)
            value = summary_fields(rest[0]) if rest else firestore.DELETE_FIELD
            account_ref.update({SUMMARY_FIELD: value})
            self.stats.add(writes=1)

    def wipe(self, account: str, epoch: int) -> int:
        """Fenced once up front; the deletes that follow are idempotent."""

        self._fence(self._db.batch(), account, epoch)  # a check only: the batch is not committed
        refs = list(self._backups(account).list_documents())
        for ref in refs:
            self.stats.add(reads=1)
            ref.delete()
            self.stats.add(writes=1)
            self._delete_chunks(ref)
        account_ref = self._account(account)
        if account_ref.get().exists:
            account_ref.update({SUMMARY_FIELD: firestore.DELETE_FIELD})
        return len(refs)
