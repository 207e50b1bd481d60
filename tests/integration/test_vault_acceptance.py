"""Vault acceptance on the Firestore emulator: tampering, wrong key, no empty backups,
fencing, ENOSPC while restoring."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest
from google.cloud import firestore

from connector.adapters.disk_sessions import SessionDiskError
from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.backup_crypto import Keyring
from connector.ports import Manifest, NextCommit
from connector.sessions.whatsmeow import delete_device
from connector.vault import BackupStatus, EnsureAction
from tests.vault_support import (
    JID,
    OTHER_JID,
    add_rows,
    change_one_row,
    event_types,
    make_session,
    make_vault,
    new_key,
    template,
)
from wa_wire import EventType
from wa_wire.names import Collections, SubCollections

A, B = "acct-accept", "acct-other"


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def session(root: Path, tmpl: Path) -> Path:
    path = root / A / "session.db"
    make_session(tmpl, path, rows=100)
    return path


def chunk_doc(
    db: firestore.Client, account: str, generation: int, index: int = 0
) -> firestore.DocumentReference:
    path = f"{Collections.ACCOUNTS}/{account}/{SubCollections.BACKUPS}/{generation}/{SubCollections.CHUNKS}/{index}"
    return db.document(path)


def backup_doc(db: firestore.Client, account: str, generation: int) -> firestore.DocumentReference:
    return db.document(f"{Collections.ACCOUNTS}/{account}/{SubCollections.BACKUPS}/{generation}")


def get_chunk(db: firestore.Client, account: str, generation: int, index: int = 0) -> bytes:
    """A stored chunk wherever it lives: chunk 0 inline in the manifest (`head`), the others as documents."""
    if index == 0:
        head: bytes = (backup_doc(db, account, generation).get().to_dict() or {})["head"]
        return head
    data: bytes = (chunk_doc(db, account, generation, index).get().to_dict() or {})["data"]
    return data


def put_chunk(db: firestore.Client, account: str, generation: int, index: int, data: bytes) -> None:
    if index == 0:
        backup_doc(db, account, generation).update({"head": data})
    else:
        chunk_doc(db, account, generation, index).set({"data": data})


def flip_a_byte(db: firestore.Client, generation: int) -> None:
    data = bytearray(get_chunk(db, A, generation))
    data[len(data) // 2] ^= 0x01
    put_chunk(db, A, generation, 0, bytes(data))


def copy_from_other_account(db: firestore.Client, generation: int) -> None:
    put_chunk(db, A, generation, 0, get_chunk(db, B, 1))


def copy_from_other_generation(db: firestore.Client, generation: int) -> None:
    put_chunk(db, A, generation, 0, get_chunk(db, A, generation - 1))


@pytest.mark.parametrize(
    "damage",
    [flip_a_byte, copy_from_other_account, copy_from_other_generation],
    ids=["one flipped byte", "chunk of another account", "chunk of another generation"],
)
def test_a_damaged_chunk_is_detected_and_the_previous_generation_restores(
    clean_firestore: firestore.Client, root: Path, session: Path, tmpl: Path, damage: object
) -> None:
    vault, events = make_vault(root, FirestoreBackupStore(clean_firestore))
    make_session(tmpl, root / B / "session.db", jid=OTHER_JID)
    vault.backup(B, OTHER_JID, 1, True)
    vault.backup(A, JID, 1, True)
    first = vault.disk.snapshot(A, JID).sha256
    change_one_row(session)
    assert vault.backup(A, JID, 1, True).generation == 2
    damage(clean_firestore, 2)  # type: ignore[operator]
    shutil.rmtree(root / A)
    outcome = vault.ensure_session(A, JID, 1)
    assert (outcome.action, outcome.generation) == (EnsureAction.RESTORED, 1)
    assert vault.disk.snapshot(A, JID).sha256 == first
    failed = [e for e in events.events if e.type is EventType.RESTORE_FAILED]
    assert [e.session_generation for e in failed] == [2]
    assert "chunk 0 fails authentication" in failed[0].detail


def test_a_wrong_key_fails_naming_the_key_id(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    right = Keyring(new_key(1))
    writer, _ = make_vault(root, FirestoreBackupStore(clean_firestore), keys=right)
    writer.backup(A, JID, 1, True)
    shutil.rmtree(root / A)
    reader, events = make_vault(root, FirestoreBackupStore(clean_firestore), keys=Keyring(new_key(2)))
    outcome = reader.ensure_session(A, JID, 1)
    assert outcome.action is EnsureAction.RESTORE_FAILED
    (event,) = events.events
    assert event.type is EventType.RESTORE_FAILED and right.current.key_id in event.detail
    assert "\n" not in event.detail
    assert writer.generations(A), "nothing was deleted"


def test_after_a_device_deletion_no_empty_backup_is_written(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    vault, _ = make_vault(root, FirestoreBackupStore(clean_firestore))
    assert vault.backup(A, JID, 1, True).generation == 1
    delete_device(session)  # what whatsmeow does itself on a 401
    refused = vault.backup(A, JID, 1, True)
    assert refused.status is BackupStatus.REFUSED and "no device row" in refused.reason
    manifests = vault.generations(A)
    assert [(m.generation, m.good) for m in manifests] == [(1, True)]
    summary = (clean_firestore.document(f"{Collections.ACCOUNTS}/{A}").get().to_dict() or {})["backup"]
    assert (summary["generation"], summary["good"]) == (1, True)


def set_lease_epoch(db: firestore.Client, account: str, epoch: int) -> None:
    db.document(f"{Collections.LEASES}/{account}").set({"epoch": epoch, "holder": "someone-else"})


def test_a_stale_epoch_leaves_no_generation(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    store = FirestoreBackupStore(clean_firestore)
    vault, events = make_vault(root, store)
    set_lease_epoch(clean_firestore, A, 5)
    outcome = vault.backup(A, JID, 4, True)
    assert outcome.status is BackupStatus.REFUSED and "stale lease epoch" in outcome.reason
    assert vault.generations(A) == [] and store.orphan_generations(A) == []
    assert events.events == []


class TakenOverAfterChunks(FirestoreBackupStore):
    """Another connector takes the lease after this one wrote its chunks."""

    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        super().write_chunks(account, generation, chunks, start)
        set_lease_epoch(self._db, account, 2)


def test_losing_the_lease_before_the_manifest_leaves_no_generation(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    add_rows(session, JID, 1200, prefix="big")  # two chunks: chunk documents, then the manifest
    store = TakenOverAfterChunks(clean_firestore)
    vault, _ = make_vault(root, store)
    outcome = vault.backup(A, JID, 1, True)
    assert outcome.status is BackupStatus.REFUSED
    assert store.manifests(A) == [] and store.orphan_generations(A) == []
    account = clean_firestore.document(f"{Collections.ACCOUNTS}/{A}").get().to_dict() or {}
    assert "backup" not in account


class TakenOverWhileSealing(FirestoreBackupStore):
    """Another connector takes the lease between the read and the commit of a one-chunk backup
    (the vault commits those through `commit_next_many`; its conflict goes to `commit_next`)."""

    def commit_next(self, account: str, epoch: int, build: Callable[[int], Manifest]) -> NextCommit:
        return super().commit_next(account, epoch, self._taken_over(account, build))

    def commit_next_many(
        self, items: Sequence[tuple[str, int, Callable[[int], Manifest]]]
    ) -> list[NextCommit | Exception]:
        self.batched = [account for account, _, _ in items]
        return super().commit_next_many([(a, e, self._taken_over(a, build)) for a, e, build in items])

    def _taken_over(self, account: str, build: Callable[[int], Manifest]) -> Callable[[int], Manifest]:
        def taken_over(generation: int) -> Manifest:
            set_lease_epoch(self._db, account, 2)
            return build(generation)

        return taken_over


def test_losing_the_lease_during_a_one_chunk_backup_leaves_no_generation(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    store = TakenOverWhileSealing(clean_firestore)
    vault, events = make_vault(root, store)
    outcome = vault.backup(A, JID, 1, True)
    assert outcome.status is BackupStatus.REFUSED and "older than the current 2" in outcome.reason
    assert store.batched == [A], "through the batched commit"
    assert store.manifests(A) == [] and events.events == []
    account = clean_firestore.document(f"{Collections.ACCOUNTS}/{A}").get().to_dict() or {}
    assert "backup" not in account and "backup_reserved_generation" not in account


def test_enospc_while_restoring_keeps_the_previous_disk_session(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    def full_disk(path: Path) -> BinaryIO:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    store = FirestoreBackupStore(clean_firestore)
    vault, _ = make_vault(root, store)
    vault.backup(A, JID, 1, True)
    change_one_row(session)
    before = session.read_bytes()
    failing, events = make_vault(root, store, opener=full_disk)
    with pytest.raises(SessionDiskError) as caught:
        failing.restore(A, 1, generation=1)
    message = str(caught.value)
    assert "No space left on device" in message and A in message and "\n" not in message
    assert session.read_bytes() == before
    assert vault.check_disk(A).jid == JID
    assert event_types(events) == [EventType.RESTORE_FAILED]
    assert [p.name for p in session.parent.iterdir() if "restoring" in p.name] == []


def copy_generation(db: firestore.Client, source: tuple[str, int], target: tuple[str, int]) -> None:
    """A whole generation (manifest and chunks, same key) copied to another account or number."""
    manifest = backup_doc(db, *source).get().to_dict() or {}
    backup_doc(db, *target).set({**manifest, "generation": target[1]})
    for index in range(1, manifest["chunk_count"]):
        chunk_doc(db, *target, index).set(chunk_doc(db, *source, index).get().to_dict() or {})


@pytest.mark.parametrize("source", [(B, 1), (A, 1)], ids=["from another account", "from another generation"])
def test_a_whole_generation_copied_under_another_name_is_rejected(
    clean_firestore: firestore.Client, root: Path, session: Path, tmpl: Path, source: tuple[str, int]
) -> None:
    """Same key, valid chunks: only the associated data (account, generation) can tell."""
    vault, events = make_vault(root, FirestoreBackupStore(clean_firestore))
    make_session(tmpl, root / B / "session.db", jid=JID)  # same jid: the jid check cannot tell either
    vault.backup(B, JID, 1, True)
    vault.backup(A, JID, 1, True)
    copy_generation(clean_firestore, source, (A, 5))
    outcome = vault.restore(A, 1, generation=5)
    assert not outcome.ok
    (event,) = events.events[-1:]
    assert event.type is EventType.RESTORE_FAILED and event.session_generation == 5
    assert "does not open" in event.detail and "copied from another account or generation" in event.detail


def test_chunks_swapped_within_a_generation_fail_on_their_index(
    clean_firestore: firestore.Client, root: Path, session: Path
) -> None:
    """Same data key, right account and generation: the chunk index in the associated data tells."""
    add_rows(session, JID, 1200, row_bytes=2000, prefix="big")
    vault, events = make_vault(root, FirestoreBackupStore(clean_firestore))
    vault.backup(A, JID, 1, True)
    assert vault.generations(A)[0].chunk_count >= 2
    first, second = (get_chunk(clean_firestore, A, 1, i) for i in (0, 1))
    put_chunk(clean_firestore, A, 1, 0, second)
    put_chunk(clean_firestore, A, 1, 1, first)
    assert not vault.restore(A, 1).ok
    assert "chunk 0 fails authentication" in events.events[-1].detail
