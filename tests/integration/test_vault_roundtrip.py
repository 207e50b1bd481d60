"""The vault on the Firestore emulator with real session files: the real-format round trip
(neonize loads the restored session) and a 20 MiB session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud import firestore

from connector.adapters.disk_sessions import DiskState
from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.backup_crypto import MAX_CHUNK_BYTES
from connector.vault import BackupStatus, EnsureAction
from tests.vault_support import JID, REPO, add_rows, make_session, make_vault, subprocess_env, template
from wa_wire import EventType

A = "acct-roundtrip"
PROBE = REPO / "tests" / "integration" / "vault_neonize_probe.py"


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


def neonize_load(path: Path) -> dict[str, str]:
    """Load a session with real neonize in a fresh process (never in this one)."""
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"probe printed nothing; stderr: {proc.stderr[-500:]}"
    result: dict[str, str] = json.loads(lines[-1])
    result["returncode"] = str(proc.returncode)
    return result


def test_real_format_round_trip(clean_firestore: firestore.Client, tmp_path: Path, tmpl: Path) -> None:
    root = tmp_path / "sessions"
    session = root / A / "session.db"
    make_session(tmpl, session, rows=200)
    assert neonize_load(session)["user"] == "15550001111"  # the synthetic device loads before the trip
    vault, events = make_vault(root, FirestoreBackupStore(clean_firestore))
    written = vault.backup(A, JID, epoch=1, taken_while_connected=True)
    assert written.status is BackupStatus.WRITTEN
    snapshot_sha = vault.generations(A)[0].sha256

    shutil.rmtree(root / A)
    outcome = vault.ensure_session(A, JID, epoch=1)
    assert (outcome.action, outcome.disk.state, outcome.generation) == (
        EnsureAction.RESTORED,
        DiskState.MISSING,
        written.generation,
    )
    assert [e.type for e in events.events] == [EventType.BACKUP_WRITTEN, EventType.RESTORED]
    loaded = neonize_load(session)
    assert loaded["returncode"] == "0", loaded
    assert loaded["user"] == "15550001111"
    assert "failed to dial" in loaded["dial_error"]
    assert vault.disk.snapshot(A, JID).sha256 == snapshot_sha


def test_a_corrupt_file_does_not_load_in_neonize(tmp_path: Path) -> None:
    """The probe can fail: a damaged file is refused by neonize (so the test above means something)."""
    bad = tmp_path / "session.db"
    bad.write_bytes(b"not a database" * 1000)
    result = neonize_load(bad)
    assert result["returncode"] == "1" and "database" in result["error"]


def test_a_20_mib_session_backs_up_in_23_chunks_and_restores_byte_identical(
    clean_firestore: firestore.Client, tmp_path: Path, tmpl: Path
) -> None:
    root = tmp_path / "sessions"
    session = root / A / "session.db"
    make_session(tmpl, session)
    # ~20 MiB of random key material, one 3,900-byte record per page: the file is barely
    # larger than its keys, which do not compress, so the compressed snapshot stays >= 20 MiB.
    add_rows(session, JID, rows=5_500, row_bytes=3_900)
    store = FirestoreBackupStore(clean_firestore)
    vault, _ = make_vault(root, store)
    snapshot = vault.disk.snapshot(A, JID)
    assert 20 * 2**20 <= snapshot.size <= 23 * 2**20
    assert vault.backup(A, JID, 1, True).status is BackupStatus.WRITTEN
    (manifest,) = vault.generations(A)
    assert manifest.chunk_count >= 23
    assert store.stats.bytes_written >= 20 * 2**20
    assert all(len(c or b"") <= MAX_CHUNK_BYTES for c in store.read_chunks(A, 1, manifest.chunk_count))

    shutil.rmtree(root / A)
    assert vault.ensure_session(A, JID, 1).action is EnsureAction.RESTORED
    assert session.read_bytes() == snapshot.data
    assert vault.disk.snapshot(A, JID).sha256 == snapshot.sha256
