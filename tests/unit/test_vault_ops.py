"""SessionVault on the in-memory store: backup, restore order, fallback, refusals, wipe, volume."""

from __future__ import annotations

import errno
import shutil
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest

from connector.adapters.disk_sessions import DiskHealth, DiskState, SessionDiskError
from connector.adapters.memory_backups import MemoryBackupStore
from connector.backup_crypto import Keyring
from connector.clock import FakeClock
from connector.errors import KeeperError
from connector.outbox_store import OutboxFullError
from connector.ports import Manifest, NextCommit
from connector.sessions.whatsmeow import delete_device
from connector.vault import (
    CHECKED_AHEAD_FOR_S,
    BackupOutcome,
    BackupRequest,
    BackupStatus,
    EnsureAction,
    SessionVault,
    WipeNotConfirmedError,
)
from tests.vault_support import (
    CONNECTOR,
    JID,
    OTHER_JID,
    CountingStore,
    add_rows,
    change_one_row,
    event_types,
    make_session,
    make_vault,
    new_key,
    template,
)
from wa_wire import EventType

A = "acct-ops"


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def store() -> MemoryBackupStore:
    return MemoryBackupStore()


@pytest.fixture
def session(root: Path, tmpl: Path) -> Path:
    path = root / A / "session.db"
    make_session(tmpl, path, rows=20)
    return path


def test_backup_writes_a_generation_with_an_event(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, events = make_vault(root, store)
    outcome = vault.backup(A, JID, epoch=3, taken_while_connected=True)
    assert (outcome.status, outcome.generation) == (BackupStatus.WRITTEN, 1)
    (manifest,) = vault.generations(A)
    assert (manifest.jid, manifest.good, manifest.lease_epoch, manifest.connector_id) == (
        JID,
        True,
        3,
        CONNECTOR,
    )
    assert manifest.size == len(vault.disk.snapshot(A, JID).data)
    (event,) = events.events
    assert (event.type, event.lease_epoch, event.session_generation) == (EventType.BACKUP_WRITTEN, 3, 1)
    assert store.summaries[A]["generation"] == 1


def test_unchanged_content_is_not_uploaded_and_a_connected_snapshot_marks_it_good(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, events = make_vault(root, store)
    assert vault.backup(A, JID, 1, taken_while_connected=False).generation == 1
    again = vault.backup(A, JID, 1, taken_while_connected=True)
    assert (again.status, again.generation) == (BackupStatus.UNCHANGED, 1)
    assert [m.good for m in vault.generations(A)] == [True]
    fresh_vault, _ = make_vault(root, store)  # no cache: the store says unchanged too
    assert fresh_vault.backup(A, JID, 1, True).status is BackupStatus.UNCHANGED
    change_one_row(session)
    assert vault.backup(A, JID, 1, True).generation == 2
    assert event_types(events) == [EventType.BACKUP_WRITTEN, EventType.BACKUP_WRITTEN]


def test_after_a_device_deletion_snapshot_refuses_and_the_good_generation_stays(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    delete_device(session)  # what whatsmeow does on a 401
    refused = vault.backup(A, JID, 1, True)
    assert refused.status is BackupStatus.REFUSED and "no_device" in refused.reason
    assert [(m.generation, m.good) for m in vault.generations(A)] == [(1, True)]


@pytest.mark.parametrize(
    ("jid", "reason"), [(OTHER_JID, "wrong_jid"), (None, "")], ids=["other jid", "jid not known yet"]
)
def test_the_known_jid_is_required(
    root: Path, store: MemoryBackupStore, session: Path, jid: str | None, reason: str
) -> None:
    vault, _ = make_vault(root, store)
    outcome = vault.backup(A, jid, 1, True)
    if reason:
        assert outcome.status is BackupStatus.REFUSED and reason in outcome.reason
        assert vault.generations(A) == []
    else:
        assert outcome.status is BackupStatus.WRITTEN and vault.generations(A)[0].jid == JID


def test_no_session_on_disk_is_refused(root: Path, store: MemoryBackupStore) -> None:
    vault, _ = make_vault(root, store)
    outcome = vault.backup(A, JID, 1, True)
    assert outcome.status is BackupStatus.REFUSED and "missing" in outcome.reason


def test_a_stale_epoch_leaves_no_generation(root: Path, store: MemoryBackupStore, session: Path) -> None:
    vault, events = make_vault(root, store)
    store.set_lease_epoch(A, 5)
    outcome = vault.backup(A, JID, 4, True)
    assert outcome.status is BackupStatus.REFUSED and "stale lease epoch" in outcome.reason
    assert vault.generations(A) == [] and events.events == []


class TakenOverMidway(MemoryBackupStore):
    """The lease moves to another connector after the chunks are written."""

    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        super().write_chunks(account, generation, chunks, start)
        self.set_lease_epoch(account, 9)


def test_losing_the_lease_during_a_backup_leaves_no_generation_and_no_chunks(
    root: Path, session: Path
) -> None:
    add_rows(
        session, JID, 1200, prefix="big"
    )  # ~1.2 MB of random rows: two chunks, written before the manifest
    store = TakenOverMidway()
    vault, _ = make_vault(root, store)
    outcome = vault.backup(A, JID, 1, True)
    assert outcome.status is BackupStatus.REFUSED
    assert store.manifests(A) == [] and store.orphan_generations(A) == []


def test_a_takeover_reads_one_manifest_for_the_restore_and_its_first_backup(
    tmp_path: Path, tmpl: Path
) -> None:
    """The newest generation, read once with its chunk: it decides whether the disk copy is
    behind, is what gets restored, and is what the first backup compares against."""
    store = CountingStore()
    make_session(tmpl, tmp_path / "a" / A / "session.db")
    host_a, _ = make_vault(tmp_path / "a", store)
    assert host_a.backup(A, JID, 1, True).generation == 1
    store.set_lease_epoch(A, 2)
    host_b, _ = make_vault(tmp_path / "b", store)
    store.calls.clear()
    assert host_b.ensure_session(A, JID, 2).action is EnsureAction.RESTORED
    assert store.calls == ["newest"]
    store.calls.clear()
    assert host_b.backup(A, JID, 2, True).status is BackupStatus.UNCHANGED
    change_one_row(tmp_path / "b" / A / "session.db")
    assert host_b.backup(A, JID, 2, True).generation == 2
    assert store.calls == ["commit_next"]


def test_accounts_read_ahead_in_one_batch_need_no_read_of_their_own_at_ensure(
    tmp_path: Path, tmpl: Path
) -> None:
    """A takeover of many accounts: one batched read ahead of all of them, then each ensure
    decides (disk behind or not, what to restore) on what it read."""
    store = CountingStore()
    host_a, _ = make_vault(tmp_path / "a", store)
    for account in ("acct-1", "acct-2"):
        make_session(tmpl, tmp_path / "a" / account / "session.db")
        assert host_a.ensure_session(account, JID, 1).action is EnsureAction.USED_DISK
        assert host_a.backup(account, JID, 1, True).generation == 1
    store.set_lease_epoch("acct-1", 2)  # host B drives acct-1 and hands it back with a newer backup
    host_b, _ = make_vault(tmp_path / "b", store)
    assert host_b.ensure_session("acct-1", JID, 2).action is EnsureAction.RESTORED
    change_one_row(tmp_path / "b" / "acct-1" / "session.db")
    assert host_b.backup("acct-1", JID, 2, True).generation == 2
    for account, epoch in (("acct-1", 3), ("acct-2", 2), ("acct-new", 1)):
        store.set_lease_epoch(account, epoch)
    store.calls.clear()
    assert host_a.prefetch_newest({"acct-1": 3, "acct-2": 2, "acct-new": 1}) == 2
    assert store.calls == ["newest_many"]
    store.calls.clear()
    back = host_a.ensure_session("acct-1", JID, 3)
    assert (back.action, back.generation) == (EnsureAction.RESTORED, 2)  # behind: restored, no read
    assert host_a.ensure_session("acct-2", JID, 2).action is EnsureAction.USED_DISK
    assert store.calls == []
    assert host_a.ensure_session("acct-new", None, 1).action is EnsureAction.SESSION_MISSING
    assert store.calls[0] == "newest"  # not found ahead: read as before


def test_a_read_ahead_for_another_epoch_is_not_used(tmp_path: Path, tmpl: Path) -> None:
    store = CountingStore()
    vault, _ = make_vault(tmp_path, store)
    make_session(tmpl, tmp_path / A / "session.db")
    assert vault.backup(A, JID, 1, True).generation == 1
    vault.prefetch_newest({A: 2})
    store.calls.clear()
    assert vault.ensure_session(A, JID, 3).action is EnsureAction.USED_DISK
    assert store.calls == ["newest"]


def test_marking_the_good_generation_just_restored_costs_no_store_call(root: Path, session: Path) -> None:
    """Every connect after a restore marks the generation in use good; a takeover of hundreds
    of accounts should not pay a Firestore round trip each for what the restore already knew."""
    store = CountingStore()
    vault, _ = make_vault(root, store)
    assert vault.backup(A, JID, 1, False).generation == 1  # not taken while connected: not good
    shutil.rmtree(root / A)
    assert vault.restore(A, 1, generation=1).ok
    store.calls.clear()
    assert vault.mark_good(A, 1)
    assert store.calls == ["mark_good 1"]
    shutil.rmtree(root / A)
    taker, _ = make_vault(root, store)  # another host's vault takes the account over
    assert taker.ensure_session(A, JID, 2).generation == 1  # the newest good one, now
    store.calls.clear()
    assert taker.mark_good(A, 1)
    assert store.calls == []


def test_a_one_chunk_session_is_one_store_write_and_orphans_are_looked_for_after_a_gap(
    root: Path, session: Path
) -> None:
    store = CountingStore()
    vault, _ = make_vault(root, store)
    assert vault.backup(A, JID, 1, True).status is BackupStatus.WRITTEN
    change_one_row(session)
    assert vault.backup(A, JID, 1, True).generation == 2
    assert store.calls == ["manifests", "commit_next", "commit_next"]  # the newest, once per epoch
    store.calls.clear()
    dead = store.reserve_generation(A, 1)  # another writer reserved, wrote chunks, and died
    store.write_chunks(A, dead, [b"orphan"])
    change_one_row(session)
    store.set_lease_epoch(A, 2)
    store.calls.clear()
    assert vault.backup(A, JID, 2, True).generation == 4
    assert store.calls == ["manifests", "commit_next", "orphan_generations"]
    assert store.orphan_generations(A) == []
    restored = store.manifest(A, 4)
    assert restored is not None and restored.chunk_count == 1 and restored.head is not None


class ManyCountingStore(CountingStore):
    def commit_next_many(
        self, items: Sequence[tuple[str, int, Callable[[int], Manifest]]]
    ) -> list[NextCommit | Exception]:
        self.calls.append("commit_next_many " + ",".join(account for account, _, _ in items))
        return super().commit_next_many(items)


def test_backups_of_many_accounts_commit_their_one_chunk_uploads_together(root: Path, tmpl: Path) -> None:
    """A handoff's final backups: every outcome as `backup` would give it, the one-chunk
    uploads in one store call."""
    for account in ("a-same", "a-new", "a-changed", "a-big", "a-stale"):
        make_session(tmpl, root / account / "session.db", rows=20)
    add_rows(root / "a-big" / "session.db", JID, 1200, prefix="big")
    store = ManyCountingStore()
    vault, events = make_vault(root, store)
    for account in ("a-same", "a-changed"):
        vault.backup(account, JID, 1, True)
    change_one_row(root / "a-changed" / "session.db")
    store.set_lease_epoch("a-stale", 2)
    store.calls.clear()
    events.events.clear()
    accounts = ["a-same", "a-new", "a-changed", "a-big", "a-stale", "a-missing"]
    outcomes = vault.backup_many([BackupRequest(account, JID, 1, True) for account in accounts])
    assert [o.status.value if isinstance(o, BackupOutcome) else o for o in outcomes] == [
        "unchanged",
        "written",
        "written",
        "written",
        "refused",
        "refused",
    ]
    assert [o.generation for o in outcomes if isinstance(o, BackupOutcome)][:4] == [1, 1, 2, 1]
    assert isinstance(outcomes[4], BackupOutcome) and "stale lease epoch" in outcomes[4].reason
    assert isinstance(outcomes[5], BackupOutcome) and "missing" in outcomes[5].reason
    assert [c for c in store.calls if c.startswith("commit")] == [
        "commit_next_many a-new,a-changed,a-stale",
        "commit_next",
        "commit_next",
        "commit_next",  # the memory store's, one by one; Firestore's commits them together
        "commit",  # a-big: its chunks first, then the manifest
    ]
    assert sorted(e.account_id for e in events.events) == ["a-big", "a-changed", "a-new"]
    with pytest.raises(KeeperError, match="twice"):
        vault.backup_many([BackupRequest("a-new", JID, 1, True)] * 2)


class BatchedCommitFails(MemoryBackupStore):
    fail = False

    def commit_next_many(
        self, items: Sequence[tuple[str, int, Callable[[int], Manifest]]]
    ) -> list[NextCommit | Exception]:
        if self.fail and items:
            raise OSError("firestore unreachable")
        return super().commit_next_many(items)


def test_a_failed_batched_commit_fails_only_the_uploads_it_carried(root: Path, tmpl: Path) -> None:
    for account in ("a-same", "a-new"):
        make_session(tmpl, root / account / "session.db", rows=20)
    store = BatchedCommitFails()
    vault, _ = make_vault(root, store)
    vault.backup("a-same", JID, 1, True)
    store.fail = True
    same, new = vault.backup_many([BackupRequest(a, JID, 1, True) for a in ("a-same", "a-new")])
    assert isinstance(same, BackupOutcome) and same.status is BackupStatus.UNCHANGED
    assert isinstance(new, OSError) and vault.generations("a-new") == []
    store.fail = False
    assert vault.backup("a-new", JID, 1, True).generation == 1, "nothing half-written in the way"


def test_a_session_bigger_than_a_chunk_writes_its_chunks_before_the_manifest(
    root: Path, session: Path
) -> None:
    add_rows(session, JID, 1200, prefix="big")
    store = CountingStore()
    vault, _ = make_vault(root, store)
    outcome = vault.backup(A, JID, 1, True)
    assert (outcome.status, outcome.generation) == (BackupStatus.WRITTEN, 1)
    assert store.calls == ["manifests", "reserve_generation", "write_chunks", "commit", "orphan_generations"]
    shutil.rmtree(root / A)
    assert vault.ensure_session(A, JID, 1).action is EnsureAction.RESTORED


def test_orphan_chunks_are_ignored_then_cleaned(root: Path, store: MemoryBackupStore, session: Path) -> None:
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    orphan = store.reserve_generation(A, 1)
    store.write_chunks(A, orphan, [b"a writer died here"])
    shutil.rmtree(root / A)
    store.set_lease_epoch(A, 2)  # the next holder
    assert vault.ensure_session(A, JID, 2).generation == 1
    change_one_row(session)
    assert vault.backup(A, JID, 2, True).generation == orphan + 1
    assert store.orphan_generations(A) == []


class FailsOnceAfterChunks(MemoryBackupStore):
    """The manifest commit fails once (a network error) after the chunks are written."""

    failed = False

    def commit(self, manifest: Manifest) -> None:
        if not self.failed:
            self.failed = True
            raise OSError("connection reset")
        super().commit(manifest)


def test_chunks_left_by_a_failed_upload_are_cleaned_by_the_next_backup(root: Path, session: Path) -> None:
    store = FailsOnceAfterChunks()
    vault, _ = make_vault(root, store)
    change_one_row(session)
    assert vault.backup(A, JID, 1, True).generation == 1  # orphans looked for: this epoch is done
    add_rows(session, JID, 1200, prefix="big")
    with pytest.raises(OSError, match="connection reset"):
        vault.backup(A, JID, 1, True)
    assert store.orphan_generations(A) == [2]
    change_one_row(session)
    assert vault.backup(A, JID, 1, True).generation == 3
    assert store.orphan_generations(A) == []


def test_a_disk_check_made_ahead_serves_ensure_only_while_the_files_and_the_time_allow(
    root: Path, store: MemoryBackupStore, session: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    vault, _ = make_vault(root, store, clock=clock)
    checks: list[str] = []
    real_check = vault.disk.check

    def counted(account: str, thorough: bool = False) -> DiskHealth:
        checks.append(account)
        return real_check(account, thorough)

    monkeypatch.setattr(vault.disk, "check", counted)
    vault.check_ahead([A, "acct-none"])  # no disk copy of acct-none: nothing checked
    assert checks == [A]
    assert vault.ensure_session(A, JID, 1).action is EnsureAction.USED_DISK
    assert checks == [A]  # the check ahead served
    assert vault.ensure_session(A, JID, 1).action is EnsureAction.USED_DISK
    assert checks == [A, A]  # used once
    vault.check_ahead([A])
    change_one_row(session)  # the file changed since: checked again
    assert vault.ensure_session(A, JID, 1).action is EnsureAction.USED_DISK
    assert checks == [A, A, A, A]
    vault.check_ahead([A])
    clock.advance(CHECKED_AHEAD_FOR_S + 1)  # too old: checked again
    vault.ensure_session(A, JID, 1)
    assert checks == [A, A, A, A, A, A]


def test_a_corrupt_disk_found_ahead_is_restored_at_ensure(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    data = bytearray(session.read_bytes())
    data[4096 * 2 : 4096 * 2 + 64] = b"\xff" * 64
    session.write_bytes(bytes(data))
    vault.check_ahead([A])
    outcome = vault.ensure_session(A, JID, 2)
    assert (outcome.action, outcome.disk.state) == (EnsureAction.RESTORED, DiskState.CORRUPT)


def test_an_event_the_outbox_refuses_does_not_undo_the_backups_of_a_group(
    root: Path, store: MemoryBackupStore, tmpl: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vault, events = make_vault(root, store)
    accounts = [f"acct-full-{i}" for i in range(3)]
    for account in accounts:
        make_session(tmpl, root / account / "session.db", rows=5)

    def full(event: object) -> None:
        raise OutboxFullError("the outbox is full (3 events wait for Pub/Sub)")

    events.emit = full  # type: ignore[method-assign]
    requests = [BackupRequest(account, JID, 1, True) for account in accounts]
    outcomes = vault.backup_many(requests)
    assert [getattr(o, "status", o) for o in outcomes] == [BackupStatus.WRITTEN] * 3
    assert "backup_written event not stored" in caplog.text
    again = vault.backup_many(requests)  # each written generation was recorded: unchanged now
    assert [getattr(o, "status", o) for o in again] == [BackupStatus.UNCHANGED] * 3


def test_ensure_session_uses_a_healthy_disk(root: Path, store: MemoryBackupStore, session: Path) -> None:
    vault, events = make_vault(root, store)
    outcome = vault.ensure_session(A, JID, 1)
    assert outcome.action is EnsureAction.USED_DISK and outcome.disk.jid == outcome.jid == JID
    assert events.events == []


def test_a_missing_disk_session_is_restored_from_the_newest_good(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, events = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    change_one_row(session)
    vault.backup(A, JID, 1, taken_while_connected=False)  # newest, not good
    change_one_row(session)
    good = vault.backup(A, JID, 1, True).generation
    want = vault.disk.snapshot(A, JID).sha256
    change_one_row(session)
    vault.backup(A, JID, 1, False)
    shutil.rmtree(root / A)
    outcome = vault.ensure_session(A, JID, 2)
    assert (outcome.action, outcome.generation, outcome.disk.state) == (
        EnsureAction.RESTORED,
        good,
        DiskState.MISSING,
    )
    assert vault.disk.snapshot(A, JID).sha256 == want and outcome.jid == JID
    last = events.events[-1]
    assert (last.type, last.session_generation, last.lease_epoch) == (EventType.RESTORED, good, 2)


def tamper(store: MemoryBackupStore, generation: int) -> None:
    chunk = bytearray(store.read_chunks(A, generation, 1)[0] or b"")
    chunk[100] ^= 0x01
    store.put_chunk(A, generation, 0, bytes(chunk))


@pytest.mark.parametrize(
    "damage",
    [
        tamper,
        lambda s, g: s.drop_chunk(A, g, 0),
        lambda s, g: s.put_chunk(A, g, 0, s.read_chunks("acct-other", 1, 1)[0] or b""),
        lambda s, g: s.put_chunk(A, g, 0, s.read_chunks(A, g - 1, 1)[0] or b""),
    ],
    ids=["flipped byte", "missing chunk", "chunk of another account", "chunk of another generation"],
)
def test_a_damaged_generation_falls_back_to_the_previous(
    root: Path, store: MemoryBackupStore, session: Path, tmpl: Path, damage: object
) -> None:
    vault, events = make_vault(root, store)
    make_session(tmpl, root / "acct-other" / "session.db", jid=OTHER_JID)
    vault.backup("acct-other", OTHER_JID, 1, True)
    vault.backup(A, JID, 1, True)
    first = vault.disk.snapshot(A, JID).sha256
    change_one_row(session)
    vault.backup(A, JID, 1, True)
    damage(store, 2)  # type: ignore[operator]
    shutil.rmtree(root / A)
    outcome = vault.ensure_session(A, JID, 1)
    assert (outcome.action, outcome.generation) == (EnsureAction.RESTORED, 1)
    assert vault.disk.snapshot(A, JID).sha256 == first
    failed = [e for e in events.events if e.type is EventType.RESTORE_FAILED]
    assert [e.session_generation for e in failed] == [2]


def test_a_wrong_key_fails_with_the_key_id_and_nothing_is_lost(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    writer_keys = Keyring(new_key(1))
    vault, _ = make_vault(root, store, keys=writer_keys)
    vault.backup(A, JID, 1, True)
    shutil.rmtree(root / A)
    stranger, events = make_vault(root, store, keys=Keyring(new_key(2)))
    outcome = stranger.ensure_session(A, JID, 1)
    assert outcome.action is EnsureAction.RESTORE_FAILED
    assert writer_keys.current.key_id in events.events[0].detail
    rotated, _ = make_vault(root, store, keys=Keyring(new_key(2), [new_key(1)]))
    assert rotated.ensure_session(A, JID, 1).action is EnsureAction.RESTORED


def test_a_corrupt_disk_file_is_kept_aside_and_restored(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    session.write_bytes(b"\x00" * 8192)
    outcome = vault.ensure_session(A, JID, 1)
    assert (outcome.action, outcome.disk.state) == (EnsureAction.RESTORED, DiskState.CORRUPT)
    assert [p.name.split("-")[0] for p in session.parent.glob("session.db.corrupt-*")] == [
        "session.db.corrupt"
    ]
    assert vault.check_disk(A).state is DiskState.OK


def test_no_generation_means_session_missing(root: Path, store: MemoryBackupStore, session: Path) -> None:
    vault, events = make_vault(root, store)
    session.write_bytes(b"garbage" * 100)
    outcome = vault.ensure_session(A, JID, 4)
    assert outcome.action is EnsureAction.SESSION_MISSING and outcome.jid is None
    assert event_types(events) == [EventType.SESSION_MISSING] and events.events[0].lease_epoch == 4
    assert not session.exists() and len(list(session.parent.glob("session.db.corrupt-*"))) == 1


def test_a_logged_out_or_foreign_disk_session_is_restored(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    delete_device(session)
    assert vault.ensure_session(A, JID, 1).action is EnsureAction.RESTORED
    assert (
        vault.ensure_session(A, OTHER_JID, 1).action is EnsureAction.RESTORE_FAILED
    )  # backups hold JID only
    assert vault.check_disk(A).jid == JID


def test_restore_a_given_generation(root: Path, store: MemoryBackupStore, session: Path) -> None:
    vault, events = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    first = vault.disk.snapshot(A, JID).sha256
    change_one_row(session)
    vault.backup(A, JID, 1, True)
    outcome = vault.restore(A, 1, generation=1)
    assert outcome.ok and outcome.generation == 1
    assert vault.disk.snapshot(A, JID).sha256 == first
    assert len(list(session.parent.glob("session.db.previous-*"))) == 1
    missing = vault.restore(A, 1, generation=9)
    assert not missing.ok and events.events[-1].type is EventType.RESTORE_FAILED


def test_enospc_during_restore_keeps_the_previous_disk_session(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    def full_disk(path: Path) -> BinaryIO:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    change_one_row(session)
    before = session.read_bytes()
    failing, events = make_vault(root, store, opener=full_disk)
    with pytest.raises(SessionDiskError, match="No space left on device"):
        failing.restore(A, 1, generation=1)
    assert session.read_bytes() == before
    assert event_types(events) == [EventType.RESTORE_FAILED]


def test_mark_good(root: Path, store: MemoryBackupStore, session: Path) -> None:
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, False)
    assert vault.mark_good(A, 1) and not vault.mark_good(A, 5)
    assert vault.generations(A)[0].good


def test_wipe_needs_the_account_id_as_confirmation(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, events = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    with pytest.raises(WipeNotConfirmedError):
        vault.wipe(A, confirm="yes", epoch=1)
    assert session.exists() and vault.generations(A)
    assert vault.wipe(A, confirm=A, epoch=1) == 1
    assert not (root / A).exists() and vault.generations(A) == []
    assert events.events[-1].type is EventType.WIPED


def test_a_wiped_volume_gives_disk_lost_then_restores(
    root: Path, store: MemoryBackupStore, session: Path
) -> None:
    vault, events = make_vault(root, store)
    vault.open_volume()
    vault.backup(A, JID, 1, True)
    assert not vault.volume_lost()
    shutil.rmtree(root)
    assert vault.volume_lost()
    outcomes = vault.recover_lost_volume({A: (JID, 2), "acct-new": (None, 2)})
    assert outcomes[A].action is EnsureAction.RESTORED
    assert outcomes["acct-new"].action is EnsureAction.SESSION_MISSING
    assert event_types(events)[1:3] == [EventType.DISK_LOST, EventType.DISK_LOST]
    assert not vault.volume_lost()


def test_the_vault_refuses_to_run_where_neonize_is_loaded(
    root: Path, store: MemoryBackupStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "neonize", types.ModuleType("neonize"))
    with pytest.raises(KeeperError, match="neonize"):
        make_vault(root, store)
    assert isinstance(SessionVault, type)


def test_a_host_taking_an_account_back_restores_what_the_other_host_wrote_since(
    tmp_path: Path, tmpl: Path
) -> None:
    """Failback: host A's disk still has the session as it was before host B drove it; B's
    final backup is newer, and A must restore it instead of driving its old copy."""
    store = MemoryBackupStore()
    a_root, b_root = tmp_path / "a", tmp_path / "b"
    make_session(tmpl, a_root / A / "session.db")
    host_a, _ = make_vault(a_root, store)
    assert host_a.ensure_session(A, JID, 1).action is EnsureAction.USED_DISK
    assert host_a.backup(A, JID, 1, True).generation == 1
    assert host_a.disk.driven_epoch(A) == 1

    store.set_lease_epoch(A, 2)  # B takes over (A died or handed off)
    host_b, _ = make_vault(b_root, store)
    assert host_b.ensure_session(A, JID, 2).action is EnsureAction.RESTORED
    change_one_row(b_root / A / "session.db")
    assert host_b.backup(A, JID, 2, True).generation == 2  # its final backup
    newer = host_b.disk.snapshot(A, JID).sha256

    store.set_lease_epoch(A, 3)  # back to A, whose disk copy is healthy but old
    back = host_a.ensure_session(A, JID, 3)
    assert (back.action, back.generation) == (EnsureAction.RESTORED, 2)
    assert "last driven under lease epoch 1" in back.detail
    assert host_a.disk.snapshot(A, JID).sha256 == newer
    assert host_a.disk.driven_epoch(A) == 3

    store.set_lease_epoch(A, 4)  # A restarts: its copy is newer than anything backed up
    change_one_row(a_root / A / "session.db")
    restarted, _ = make_vault(a_root, store)
    assert restarted.ensure_session(A, JID, 4).action is EnsureAction.USED_DISK


def test_a_session_paired_here_is_recognised_as_behind_after_another_host_drove_it(
    tmp_path: Path, tmpl: Path
) -> None:
    """The bench's case: the first host paired the account (no backup existed at its start),
    then another host drove it; the first host's paired copy must not be driven again."""
    store = MemoryBackupStore()
    host_a, _ = make_vault(tmp_path / "a", store)
    assert host_a.ensure_session(A, None, 1).action is EnsureAction.SESSION_MISSING
    make_session(tmpl, tmp_path / "a" / A / "session.db")  # the worker pairs
    assert host_a.backup(A, JID, 1, True).generation == 1
    store.set_lease_epoch(A, 2)
    host_b, _ = make_vault(tmp_path / "b", store)
    assert host_b.ensure_session(A, JID, 2).action is EnsureAction.RESTORED
    change_one_row(tmp_path / "b" / A / "session.db")
    assert host_b.backup(A, JID, 2, True).generation == 2
    store.set_lease_epoch(A, 3)
    back = host_a.ensure_session(A, JID, 3)
    assert (back.action, back.generation) == (EnsureAction.RESTORED, 2)


def test_a_reconnect_in_the_same_hold_uses_the_disk_without_asking_the_store(
    root: Path, session: Path
) -> None:
    """Only a new lease can follow another holder: within one hold (reconnects, the health
    loop) the disk copy is the newest there is, even while Firestore is unreachable."""
    store = CountingStore()
    vault, _ = make_vault(root, store)
    assert vault.ensure_session(A, JID, 4).action is EnsureAction.USED_DISK
    assert store.calls == ["newest"]
    store.calls.clear()
    assert vault.ensure_session(A, JID, 4).action is EnsureAction.USED_DISK
    assert store.calls == []


def test_a_copy_that_is_behind_is_still_used_when_no_backup_restores(tmp_path: Path, tmpl: Path) -> None:
    store = MemoryBackupStore()
    make_session(tmpl, tmp_path / "a" / A / "session.db")
    host_a, _ = make_vault(tmp_path / "a", store)
    assert host_a.ensure_session(A, JID, 1).action is EnsureAction.USED_DISK
    make_session(tmpl, tmp_path / "b" / A / "session.db")
    host_b, _ = make_vault(tmp_path / "b", store, keys=Keyring(new_key(2)))  # a key A does not have
    store.set_lease_epoch(A, 2)
    assert host_b.backup(A, JID, 2, True).generation == 1
    store.set_lease_epoch(A, 3)
    outcome = host_a.ensure_session(A, JID, 3)
    assert outcome.action is EnsureAction.USED_DISK and "1 generations failed" in outcome.detail


def test_the_driven_epoch_record_is_optional_and_never_fatal(root: Path, session: Path) -> None:
    vault, _ = make_vault(root, MemoryBackupStore())
    assert vault.disk.driven_epoch(A) is None
    (root / A / "driven-epoch").write_text("garbage")
    assert vault.disk.driven_epoch(A) is None
    (root / A / "driven-epoch").unlink()
    (root / A / "driven-epoch").mkdir()  # cannot be replaced by a file: logged, not raised
    assert vault.ensure_session(A, JID, 5).action is EnsureAction.USED_DISK
    assert vault.disk.driven_epoch(A) is None
