"""The session vault: disk sessions plus encrypted, versioned backups, and the restore order.

Sync code: the supervisor calls it through `asyncio.to_thread`. Operations on
one account are serialised by a per-account lock; the account's worker must not
be running during `restore`/`ensure_session` (the supervisor's job).

Restore order (DESIGN.md): disk session present and healthy -> use it, unless a
good generation was written under a later lease than the one the copy was last
driven under (another host drove the account since: `disk_is_behind`); missing,
corrupt, logged out (no device row: whatsmeow deletes it itself on a 401), for
another jid or behind -> restore the newest good generation, falling back
generation by generation; no generation -> `session_missing` (a copy that is only
behind is still used then: an old session beats a new QR scan).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from connector.adapters.disk_sessions import (
    Checked,
    DiskHealth,
    DiskSessions,
    DiskState,
    Fingerprint,
    SessionCheckError,
    SessionDiskError,
    Snapshot,
    check_account_id,
    check_bytes,
    sha256_hex,
)
from connector.adapters.sessions_volume import VolumeMarker
from connector.backup_crypto import (
    FORMAT,
    BackupCorruptError,
    BackupKeyError,
    Keyring,
    Sealed,
    chunk_count,
    compress,
)
from connector.clock import Clock
from connector.errors import KeeperError
from connector.ports import (
    BackupStore,
    EventSink,
    Manifest,
    NewestBackup,
    NextCommit,
    StaleEpochError,
    check_one_each,
)
from connector.vault_decisions import (
    BackupOutcome,
    BackupRequest,
    BackupStatus,
    EnsureAction,
    EnsureOutcome,
    RestoreOutcome,
    disk_is_behind,
    disk_is_usable,
    is_unchanged,
    restore_candidates,
)
from wa_wire import EventType, LifecycleEvent
from wa_wire.names import MAX_DETAIL_LEN

__all__ = [
    "BackupOutcome",
    "BackupRequest",
    "BackupStatus",
    "EnsureAction",
    "EnsureOutcome",
    "RestoreOutcome",
    "SessionVault",
    "WipeNotConfirmedError",
    "disk_is_behind",
    "disk_is_usable",
    "is_unchanged",
    "restore_candidates",
]

log = logging.getLogger(__name__)

CHECKED_AHEAD_FOR_S = 30.0
"""How long a disk check made ahead of a takeover (`check_ahead`) stands for `ensure_session`'s."""


class WipeNotConfirmedError(KeeperError):
    """`wipe` needs the account id repeated as its confirmation."""


@dataclasses.dataclass(frozen=True)
class _Read:
    """A lookup already made (its answer may be None)."""

    manifest: Manifest | None


# -- the vault ------------------------------------------------------------------------------


class SessionVault:
    def __init__(
        self,
        disk: DiskSessions,
        store: BackupStore,
        keys: Keyring,
        events: EventSink,
        *,
        clock: Clock,
        connector_id: str,
    ) -> None:
        if "neonize" in sys.modules:
            raise KeeperError(
                "the vault opens session files with sqlite3: never in a process that loaded neonize"
            )
        self.disk, self.store, self.keys = disk, store, keys
        self._events, self._clock, self._connector_id = events, clock, connector_id
        self._marker = VolumeMarker(disk.root)
        self._volume_id: str | None = None
        self._newest: dict[str, tuple[int, Manifest | None]] = {}
        """Newest manifest per account, trusted while the lease epoch is the same."""
        self._hinted: dict[str, tuple[int, NewestBackup]] = {}
        """Per account, the newest backup its last holder named when it released the account
        cleanly, for the epoch the account would be held at next (`prefetch_newest`)."""
        self._checked_ahead: dict[str, tuple[float, Fingerprint, DiskHealth]] = {}
        """Per account, a disk check made ahead of a takeover (`check_ahead`): when, of what."""
        self._known_good: dict[str, int] = {}
        """Per account, a generation known to be marked good (restored as good, or marked here)."""
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, account: str) -> threading.RLock:
        check_account_id(account)  # before any path or document is built from it
        with self._locks_guard:
            return self._locks.setdefault(account, threading.RLock())

    def _emit(
        self, kind: EventType, account: str, epoch: int, detail: str = "", generation: int | None = None
    ) -> None:
        """Announce what was done. An event the sink refuses (a full outbox) is logged, and the
        outbox counts it; the operation it announces is done all the same: raising here made a
        written backup or an installed restore look failed, and left the rest of a group of
        final backups unrecorded."""
        event = LifecycleEvent.new(
            kind,
            account_id=account,
            connector_id=self._connector_id,
            lease_epoch=epoch,
            at=self._clock.now(),
            detail=detail[:MAX_DETAIL_LEN],
            session_generation=generation,
        )
        try:
            self._events.emit(event)
        except Exception as exc:
            log.error("%s: %s event not stored (what it announces is done): %s", account, kind.value, exc)

    # -- reading -------------------------------------------------------------------------

    def check_disk(self, account: str) -> DiskHealth:
        """missing | corrupt | no_device | ok(jid), by a quick check (for the health loop)."""
        return self.disk.check(account)

    def generations(self, account: str) -> list[Manifest]:
        return self.store.manifests(check_account_id(account))

    def prefetch_newest(
        self, held: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None
    ) -> int:
        """Read the newest generation of accounts just acquired, {account: epoch}, in two batched
        reads instead of one query each at `ensure_session`; returns how many were read.

        Only for leases already taken at those epochs: from then on no other host can commit
        a generation (its commits are fenced on the lease), so what is read stays the newest
        for the whole hold. Or for leases about to be taken at those epochs that were released
        cleanly at epoch - 1 before this read: the old holder writes nothing after that release,
        and nobody holds the lease until we take it at `epoch` (taking always increments it), so
        the read stays the newest if and only if we do; at any other epoch it is not used.
        Accounts not found here are read by `ensure_session` as before.

        `known`: the newest backup the releaser named for some of them (a clean-release hint;
        the same reasoning makes it the newest). Those need no summary read: a disk copy at
        least as new needs no read at all (`ensure_session` decides on the name), the others
        have their named manifest read, in one batched read.
        """
        for account in held:
            check_account_id(account)
        known = {account: newest for account, newest in (known or {}).items() if account in held}
        named: dict[str, int] = {}
        for account, newest in known.items():
            with self._lock(account):
                self._hinted[account] = (held[account], newest)
                if newest.generation and self._disk_may_need(account, newest):
                    named[account] = newest.generation
        found = self.store.manifests_named(named) if named else {}
        for account, generation in named.items():
            with self._lock(account):
                manifest = found.get(account)
                if manifest is None or manifest.lease_epoch != known[account].lease_epoch:
                    log.warning(
                        "%s: generation %d, named by its last holder, did not read back", account, generation
                    )
                    self._hinted.pop(account, None)  # ensure_session reads for itself
                    found.pop(account, None)
                else:
                    self._newest[account] = (held[account], manifest)
        unknown = [account for account in held if account not in known]
        newest_found = self.store.newest_many(unknown) if unknown else {}
        for account, manifest in newest_found.items():
            with self._lock(account):
                self._newest[account] = (held[account], manifest)
        return len(found) + len(newest_found)

    def _disk_may_need(self, account: str, newest: NewestBackup) -> bool:
        """Whether the restore order may want the newest manifest: no disk copy, or one not
        known to be at least as new (its health is judged at `ensure_session`)."""
        driven = self.disk.driven_epoch(account)
        return (
            driven is None
            or disk_is_behind(newest.lease_epoch, driven)
            or self.disk.fingerprint(account) is None
        )

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        """The newest backup generation as known here while holding the lease at `epoch`
        (read at the start of the hold, then each generation written): None when not known."""
        cached = self._newest.get(account)
        if cached is None or cached[0] != epoch:
            return None
        manifest = cached[1]
        return (
            NewestBackup(0, 0)
            if manifest is None
            else NewestBackup(manifest.generation, manifest.lease_epoch)
        )

    def check_ahead(self, accounts: Sequence[str]) -> None:
        """Check the disk copies of accounts about to be taken (a handoff hint), while their
        leases and newest backups are read: `ensure_session` then finds the check done.

        The integrity check is most of the work of starting an account whose disk copy needs
        no restore, and a takeover of hundreds queues those starts; done here, it runs while
        the starts would wait for the reads anyway. A check stands only while the files keep
        their fingerprint, for at most `CHECKED_AHEAD_FOR_S`, and is used once.
        """
        for account in accounts:
            with self._lock(account):
                before = self.disk.fingerprint(account)
                if before is None:  # no disk copy: nothing to check ahead
                    continue
                health = self.disk.check(account, thorough=True)
                if self.disk.fingerprint(account) == before:
                    self._checked_ahead[account] = (self._clock.monotonic(), before, health)

    def _disk_health(self, account: str) -> DiskHealth:
        """The thorough check of the disk copy, or the one `check_ahead` made of these very files."""
        ahead = self._checked_ahead.pop(account, None)
        if ahead is not None:
            at, fingerprint, health = ahead
            fresh = self._clock.monotonic() - at <= CHECKED_AHEAD_FOR_S
            if fresh and self.disk.fingerprint(account) == fingerprint:
                return health
        return self.disk.check(account, thorough=True)

    def _newest_manifest(self, account: str, epoch: int) -> Manifest | None:
        cached = self._newest.get(account)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        manifests = self.store.manifests(account, limit=1)
        newest = manifests[0] if manifests else None
        self._newest[account] = (epoch, newest)
        return newest

    # -- backup ----------------------------------------------------------------------------

    def backup(self, account: str, jid: str | None, epoch: int, taken_while_connected: bool) -> BackupOutcome:
        """Snapshot, check, and upload unless unchanged; refusals are outcomes, not errors."""
        outcome = self.backup_many([BackupRequest(account, jid, epoch, taken_while_connected)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def backup_many(self, requests: Sequence[BackupRequest]) -> list[BackupOutcome | Exception]:
        """`backup` of each (one per account), the one-chunk uploads committed together
        (`commit_next_many`): a handoff's final backups in a round trip or two, not two each.
        Per request its outcome, or the error that failed it alone."""
        accounts = [r.account for r in requests]
        check_one_each(accounts)
        outcomes: list[BackupOutcome | Exception | None] = [None] * len(requests)
        with contextlib.ExitStack() as locks:
            for account in sorted(accounts):  # one order for every caller: no deadlock
                locks.enter_context(self._lock(account))
            self._read_unknown_newest(requests)
            uploads: list[tuple[int, Snapshot, bytes]] = []
            for i, r in enumerate(requests):
                try:
                    checked = self._check_before_upload(r)
                except Exception as exc:
                    outcomes[i] = exc
                    continue
                if isinstance(checked, BackupOutcome):
                    outcomes[i] = checked
                else:
                    uploads.append((i, checked, compress(checked.data)))
            one_chunk = [(i, snap, data) for i, snap, data in uploads if chunk_count(data) == 1]
            committed: list[NextCommit | Exception]
            try:
                committed = self.store.commit_next_many(
                    [
                        (requests[i].account, requests[i].epoch, self._builder(requests[i], snap, data))
                        for i, snap, data in one_chunk
                    ]
                )
            except Exception as exc:  # Firestore unreachable, say: those uploads failed, not the others
                committed = [exc] * len(one_chunk)
            for (i, snap, _), c in zip(one_chunk, committed, strict=True):
                result = c if isinstance(c, Exception) else (c.manifest, len(c.manifest.head or b""), c.gap)
                outcomes[i] = self._uploaded(requests[i], snap, result)
            for i, snap, data in uploads:
                if chunk_count(data) > 1:
                    try:
                        result = self._upload_chunked(requests[i], snap, data)
                    except Exception as exc:
                        result = exc
                    outcomes[i] = self._uploaded(requests[i], snap, result)
        return [o if o is not None else KeeperError("backup not done") for o in outcomes]

    def _read_unknown_newest(self, requests: Sequence[BackupRequest]) -> None:
        """The newest manifests not known here yet, for a group (a final backup soon after a
        takeover that read none: `ensure_session` used the disk copy on its last holder's
        word), in one batched read instead of one query each. What is not found is read per
        account, as before. Called under the accounts' locks: nothing of ours lands meanwhile."""
        unknown = {r.account: r.epoch for r in requests if self._newest.get(r.account, (None,))[0] != r.epoch}
        if len(unknown) < 2:
            return
        try:
            found = self.store.newest_many(list(unknown))
        except Exception as exc:  # each reads its own
            log.warning("reading the newest backups of %d accounts failed: %s", len(unknown), exc)
            return
        for account, manifest in found.items():
            self._newest[account] = (unknown[account], dataclasses.replace(manifest, head=None))

    def _check_before_upload(self, r: BackupRequest) -> BackupOutcome | Snapshot:
        """The snapshot to upload, or the outcome without an upload (refused, unchanged)."""
        cached = self._newest.get(r.account)
        known = cached[1] if cached is not None and cached[0] == r.epoch else None
        try:
            snap = self.disk.snapshot(
                r.account, r.jid, None if known is None else Checked(known.sha256, known.jid)
            )
        except SessionCheckError as exc:
            return BackupOutcome(BackupStatus.REFUSED, reason=f"{exc.state}: {exc}")
        try:
            newest = self._newest_manifest(r.account, r.epoch)
        except StaleEpochError as exc:
            self._newest.pop(r.account, None)
            return BackupOutcome(BackupStatus.REFUSED, reason=f"stale lease epoch: {exc}")
        if newest is None or not is_unchanged(newest, snap.sha256):
            return snap
        if r.taken_while_connected and not newest.good:
            self.store.mark_good(r.account, newest.generation)
            self._newest[r.account] = (r.epoch, dataclasses.replace(newest, good=True))
        return BackupOutcome(
            BackupStatus.UNCHANGED,
            newest.generation,
            taken_at=newest.created_at,
            good=newest.good or r.taken_while_connected,
        )

    def _uploaded(
        self, r: BackupRequest, snap: Snapshot, result: tuple[Manifest, int, bool] | Exception
    ) -> BackupOutcome | Exception:
        """What an upload came to, from (manifest, bytes uploaded, orphans possible) or its error;
        a written generation is remembered and announced."""
        account, epoch = r.account, r.epoch
        if isinstance(result, StaleEpochError):
            self._newest.pop(account, None)
            return BackupOutcome(BackupStatus.REFUSED, reason=f"stale lease epoch: {result}")
        if isinstance(result, Exception):  # it may have landed all the same: the newest is unknown
            self._newest.pop(account, None)
            return result
        manifest, uploaded, orphans_possible = result
        generation = manifest.generation
        self._newest[account] = (epoch, dataclasses.replace(manifest, head=None))  # no bytes kept
        self._emit(
            EventType.BACKUP_WRITTEN,
            account,
            epoch,
            f"{snap.size} bytes in {manifest.chunk_count} chunks, key {manifest.key_id}",
            generation,
        )
        if orphans_possible:
            try:
                self._clean_orphans(account, below=generation)
            except Exception as exc:  # the generation is written; the orphans wait for the next one
                log.warning("%s: orphan chunks not cleaned: %s", account, exc)
        return BackupOutcome(
            BackupStatus.WRITTEN,
            generation,
            uploaded_bytes=uploaded,
            taken_at=manifest.created_at,
            good=manifest.good,
        )

    def _builder(self, r: BackupRequest, snap: Snapshot, compressed: bytes) -> Callable[..., Manifest]:
        """The manifest of generation n of this snapshot, sealed for n (or as `sealed`)."""

        def build(generation: int, sealed: Sealed | None = None) -> Manifest:
            if sealed is None:
                sealed = self.keys.seal_compressed(compressed, account=r.account, generation=generation)
            return Manifest(
                account_id=r.account,
                generation=generation,
                created_at=self._clock.now(),
                connector_id=self._connector_id,
                lease_epoch=r.epoch,
                format=FORMAT,
                key_id=sealed.key_id,
                wrapped_key=sealed.wrapped_key,
                size=snap.size,
                sha256=snap.sha256,
                chunk_count=len(sealed.chunks),
                taken_while_connected=r.taken_while_connected,
                good=r.taken_while_connected,
                jid=snap.jid,
                head=sealed.chunks[0],
            )

        return build

    def _upload_chunked(
        self, r: BackupRequest, snap: Snapshot, compressed: bytes
    ) -> tuple[Manifest, int, bool]:
        """A session bigger than one chunk: reserve a number, write its chunks, then commit the
        manifest (a writer dying in between leaves orphan chunks, never a generation)."""
        account, epoch = r.account, r.epoch
        generation = self.store.reserve_generation(account, epoch)
        sealed = self.keys.seal_compressed(compressed, account=account, generation=generation)
        manifest = self._builder(r, snap, compressed)(generation, sealed)
        try:
            # Chunk 0 rides in the manifest: the restore reads it with the manifest.
            self.store.write_chunks(account, generation, sealed.chunks[1:], start=1)
            self.store.commit(manifest)
        except StaleEpochError:
            self.store.delete_generation(account, generation)
            raise
        return manifest, sum(len(chunk) for chunk in sealed.chunks), True

    def _clean_orphans(self, account: str, below: int) -> None:
        """Chunks of writers that died before their manifest: never a generation, so delete them.
        Looked for after each backup with chunk documents, and after a one-chunk backup when a
        number reserved before it has no manifest (NextCommit.gap)."""
        for orphan in self.store.orphan_generations(account):
            if orphan < below:
                log.info("deleting orphan chunks of %s generation %d", account, orphan)
                self.store.delete_generation(account, orphan)

    # -- restore ---------------------------------------------------------------------------

    def _fetch(self, manifest: Manifest, expected_jid: str | None) -> bytes:
        account, generation = manifest.account_id, manifest.generation
        what = f"generation {generation} of {account}"
        if expected_jid is not None and manifest.jid != expected_jid:
            raise SessionCheckError("wrong_jid", f"{what}: holds jid {manifest.jid}, expected {expected_jid}")
        if manifest.head is not None:
            chunks = [manifest.head, *self.store.read_chunks(account, generation, manifest.chunk_count, 1)]
        else:
            chunks = self.store.read_chunks(account, generation, manifest.chunk_count)
        data = self.keys.open(
            chunks,
            account=account,
            generation=generation,
            key_id=manifest.key_id,
            wrapped_key=manifest.wrapped_key,
            fmt=manifest.format,
            size=manifest.size,
        )
        if sha256_hex(data) != manifest.sha256:
            raise BackupCorruptError(f"{what}: sha256 differs from the manifest's")
        check_bytes(data, manifest.jid, what)
        return data

    def restore(
        self,
        account: str,
        epoch: int,
        generation: int | None = None,
        expected_jid: str | None = None,
        newest: _Read | None = None,
    ) -> RestoreOutcome:
        """Install the asked-for generation, or the newest good one with fallback (`newest`:
        the newest generation, when the caller has read it already).

        A generation that fails (missing chunk, bad tag, wrong sha256, integrity,
        wrong jid) gives a `restore_failed` event and the next one is tried; a disk
        that refuses the write raises SessionDiskError (the old file stays).
        """
        with self._lock(account):
            self.disk.clear_leftovers(account)
            failures: list[tuple[int, str]] = []
            tried = 0
            for manifest in self._candidates(account, generation, newest):
                tried += 1
                try:
                    data = self._fetch(manifest, expected_jid)
                except (BackupCorruptError, BackupKeyError, SessionCheckError) as exc:
                    failures.append((manifest.generation, str(exc)))
                    self._emit(EventType.RESTORE_FAILED, account, epoch, str(exc), manifest.generation)
                    continue
                try:
                    aside = self.disk.install(account, data, manifest.sha256)
                except SessionDiskError as exc:
                    self._emit(EventType.RESTORE_FAILED, account, epoch, str(exc), manifest.generation)
                    raise
                if manifest.good:
                    self._known_good[account] = manifest.generation
                self._mark_driven(account, epoch)
                detail = f"generation {manifest.generation} ({manifest.size} bytes, jid {manifest.jid})"
                detail += f"; the replaced file is kept as {aside.name}" if aside is not None else ""
                self._emit(EventType.RESTORED, account, epoch, detail, manifest.generation)
                return RestoreOutcome(True, manifest.generation, tuple(failures), detail, manifest.jid)
            if not tried:
                detail = "no backup generation" if generation is None else f"no generation {generation}"
                if generation is not None:
                    self._emit(EventType.RESTORE_FAILED, account, epoch, detail, generation)
                return RestoreOutcome(ok=False, generation=None, detail=detail)
            return RestoreOutcome(False, None, tuple(failures), f"all {len(failures)} generations failed")

    def _candidates(
        self, account: str, generation: int | None, newest: _Read | None = None
    ) -> Iterator[Manifest]:
        """The restore order, read lazily: the asked-for or newest good generation is one
        document read (none when `newest`, already read, is good); the full listing is read
        only when that one fails."""
        if generation is not None:
            asked = self.store.manifest(account, generation)
            if asked is not None:
                yield asked
            return
        known = None if newest is None else newest.manifest
        first = known if known is not None and known.good else self.store.newest_good(account)
        if first is not None:
            yield first
        for manifest in restore_candidates(self.store.manifests(account)):
            if first is None or manifest.generation != first.generation:
                yield manifest

    def ensure_session(self, account: str, expected_jid: str | None, epoch: int) -> EnsureOutcome:
        """Make the disk session usable before the worker starts (the restore order)."""
        with self._lock(account):
            self.disk.clear_leftovers(account)
            health = self._disk_health(account)
            usable = disk_is_usable(health, expected_jid)
            driven = self.disk.driven_epoch(account) if usable else None
            if usable and driven == epoch:  # a reconnect in the same hold: nothing newer can exist
                return EnsureOutcome(EnsureAction.USED_DISK, health, jid=health.jid)
            cached, hinted = self._newest.get(account), self._hinted.pop(account, None)
            if cached is not None and cached[0] == epoch:  # prefetched, or ours in this hold
                newest = _Read(cached[1])
            elif (
                hinted is not None
                and hinted[0] == epoch
                and usable
                and not disk_is_behind(hinted[1].lease_epoch, driven)
            ):
                self._mark_driven(account, epoch)  # as new as the newest backup its last holder named
                return EnsureOutcome(EnsureAction.USED_DISK, health, jid=health.jid)
            else:  # one read: the restore and the first backup use it
                newest = _Read(self.store.newest(account))
            bare = None if newest.manifest is None else dataclasses.replace(newest.manifest, head=None)
            self._newest[account] = (epoch, bare)  # what the first backup compares against
            if usable and not disk_is_behind(
                None if newest.manifest is None else newest.manifest.lease_epoch, driven
            ):
                self._mark_driven(account, epoch)
                return EnsureOutcome(EnsureAction.USED_DISK, health, jid=health.jid)
            restored = self.restore(account, epoch, expected_jid=expected_jid, newest=newest)
            if restored.ok:
                detail = restored.detail
                if usable:
                    detail += f"; the disk copy, last driven under lease epoch {driven}, was behind it"
                return EnsureOutcome(EnsureAction.RESTORED, health, restored.generation, detail, restored.jid)
            if usable:  # behind, but the backups did not restore: an old session beats a new QR
                self._mark_driven(account, epoch)
                return EnsureOutcome(EnsureAction.USED_DISK, health, jid=health.jid, detail=restored.detail)
            if health.state is DiskState.CORRUPT:
                self.disk.set_aside(account, "corrupt")  # kept for forensics; the path is free for pairing
            self._mark_driven(account, epoch)  # a session paired from here on is driven under it
            if not restored.failures:
                detail = f"disk: {health.state}; {restored.detail}"
                self._emit(EventType.SESSION_MISSING, account, epoch, detail)
                return EnsureOutcome(EnsureAction.SESSION_MISSING, health, detail=restored.detail)
            return EnsureOutcome(EnsureAction.RESTORE_FAILED, health, detail=restored.detail)

    def _mark_driven(self, account: str, epoch: int) -> None:
        try:
            self.disk.mark_driven(account, epoch)
        except SessionDiskError as exc:  # the next start then judges the copy by its health alone
            log.warning("%s", exc)

    # -- management ------------------------------------------------------------------------

    def mark_good(self, account: str, generation: int) -> bool:
        """Set `good` on a generation (it carried a connection); no store call when it is the
        good generation this vault restored or marked last (every connect after a restore)."""
        with self._lock(account):
            if self._known_good.get(account) == generation:
                return True
            marked = self.store.mark_good(account, generation)
            if marked:
                self._known_good[account] = generation
            cached = self._newest.get(account)
            if marked and cached is not None and cached[1] is not None and cached[1].generation == generation:
                self._newest[account] = (cached[0], dataclasses.replace(cached[1], good=True))
            return marked

    def wipe(self, account: str, *, confirm: str, epoch: int) -> int:
        """Delete the disk session and every backup generation; `confirm` must equal the account id."""
        if confirm != account:
            raise WipeNotConfirmedError(f"wipe of {account} not confirmed: repeat the account id to confirm")
        with self._lock(account):
            deleted = self.store.wipe(account, epoch)
            shutil.rmtree(self.disk.folder(account), ignore_errors=True)
            self._newest.pop(account, None)
            self._hinted.pop(account, None)
            self._known_good.pop(account, None)
            self._emit(
                EventType.WIPED, account, epoch, f"disk session and {deleted} backup generations deleted"
            )
            return deleted

    # -- the volume ------------------------------------------------------------------------

    def open_volume(self) -> str:
        """Remember this volume's marker (writing one on a fresh volume); call at start."""
        self._volume_id, _created = self._marker.ensure()
        return self._volume_id

    def volume_lost(self) -> bool:
        """True when the marker vanished or changed since `open_volume`: the disk was wiped."""
        return self._volume_id is not None and not self._marker.intact(self._volume_id)

    def recover_lost_volume(self, held: Mapping[str, tuple[str | None, int]]) -> dict[str, EnsureOutcome]:
        """`disk_lost` for each held account {account: (jid, epoch)}, then restore each."""
        for account, (_jid, epoch) in held.items():
            self._emit(EventType.DISK_LOST, account, epoch, f"volume marker under {self.disk.root} is gone")
        self.open_volume()
        return {account: self.ensure_session(account, jid, epoch) for account, (jid, epoch) in held.items()}
