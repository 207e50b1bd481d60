"""kill -9 in the middle of a backup and of a restore (Firestore emulator, real session files).

The operation runs in a helper process (tests/integration/vault_crash_helper.py)
that stops at the dangerous point and prints PAUSED; the test kills it there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from google.cloud import firestore

from connector.adapters.disk_sessions import RESTORING_SUFFIX, DiskState
from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.backup_crypto import Keyring
from connector.vault import EnsureAction
from tests import emulator
from tests.vault_support import (
    JID,
    REPO,
    add_rows,
    change_one_row,
    key_base64,
    make_session,
    make_vault,
    new_key,
    subprocess_env,
    template,
)

A = "acct-crash"
PAUSE_DEADLINE_S = 120.0


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


def run_until_paused(mode: str, root: Path, key_b64: str) -> subprocess.Popen[str]:
    """Start the helper and wait (with a deadline) until it reports PAUSED."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.vault_crash_helper", mode, str(root), A, JID],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=subprocess_env(WA_KEEPER_BACKUP_KEY=key_b64, GOOGLE_CLOUD_PROJECT=emulator.project_id()),
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(PAUSE_DEADLINE_S)
    if not line or line[0].strip() != "PAUSED":
        proc.kill()
        _out, err = proc.communicate(timeout=30)
        raise AssertionError(f"helper did not pause: {line!r}; stderr: {err[-1500:]}")
    return proc


def kill_9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_kill_during_backup_keeps_the_previous_generation(
    clean_firestore: firestore.Client, tmp_path: Path, tmpl: Path
) -> None:
    root, key = tmp_path / "sessions", new_key()
    session = root / A / "session.db"
    make_session(tmpl, session, rows=300)
    store = FirestoreBackupStore(clean_firestore)
    vault, _ = make_vault(root, store, keys=Keyring(key))
    assert vault.backup(A, JID, 1, True).generation == 1
    first_sha = vault.generations(A)[0].sha256
    add_rows(session, JID, 600, prefix="more")  # a generation of several chunks' worth would follow

    kill_9(run_until_paused("backup", root, key_base64(key)))
    assert [m.generation for m in vault.generations(A)] == [1], "chunks written, no manifest: no generation"
    assert store.orphan_generations(A) == [2]

    shutil.rmtree(root / A)
    fresh, _ = make_vault(root, store, keys=Keyring(key))  # a restarted connector
    outcome = fresh.ensure_session(A, JID, 1)
    assert (outcome.action, outcome.generation) == (EnsureAction.RESTORED, 1)
    assert fresh.disk.snapshot(A, JID).sha256 == first_sha

    change_one_row(session)
    assert fresh.backup(A, JID, 1, True).generation == 3
    assert store.orphan_generations(A) == [], "the orphan chunks were cleaned by the next backup"
    assert [m.generation for m in fresh.generations(A)] == [3, 1]


@pytest.mark.parametrize("old_file", ["none", "corrupt"])
def test_kill_during_restore_then_the_next_start_restores(
    clean_firestore: firestore.Client, tmp_path: Path, tmpl: Path, old_file: str
) -> None:
    root, key = tmp_path / "sessions", new_key()
    session = root / A / "session.db"
    make_session(tmpl, session, rows=2500)  # > 1 MiB: the helper pauses after the first MiB
    vault, _ = make_vault(root, FirestoreBackupStore(clean_firestore), keys=Keyring(key))
    vault.backup(A, JID, 1, True)
    want = vault.generations(A)[0].sha256
    shutil.rmtree(root / A)
    if old_file == "corrupt":
        session.parent.mkdir(parents=True)
        session.write_bytes(b"\x13" * 50_000)
    before = session.read_bytes() if session.exists() else None

    kill_9(run_until_paused("restore", root, key_base64(key)))
    partial = session.parent / (session.name + RESTORING_SUFFIX)
    assert partial.exists() and partial.stat().st_size > 0, "the kill hit the middle of the write"
    after = session.read_bytes() if session.exists() else None
    assert after == before, "the session path holds the old file or none, never the torn one"

    fresh, _ = make_vault(root, FirestoreBackupStore(clean_firestore), keys=Keyring(key))
    outcome = fresh.ensure_session(A, JID, 1)
    expected_disk = DiskState.MISSING if old_file == "none" else DiskState.CORRUPT
    assert (outcome.action, outcome.disk.state) == (EnsureAction.RESTORED, expected_disk)
    assert not partial.exists()
    assert fresh.disk.snapshot(A, JID).sha256 == want
    if old_file == "corrupt":
        (aside,) = session.parent.glob("session.db.corrupt-*")
        assert aside.read_bytes() == before
