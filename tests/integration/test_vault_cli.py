"""`wa-keeper backups`, `restore [--local]` and `doctor`, run as the operator runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.backup_crypto import Keyring
from connector.settings import BackupKey
from tests import emulator
from tests.vault_support import JID, key_base64, make_session, make_vault, new_key, subprocess_env, template
from wa_wire.names import Collections

A = "acct-cli"


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


@pytest.fixture
def key() -> BackupKey:
    return new_key()


@pytest.fixture
def backed_up(clean_firestore: firestore.Client, tmp_path: Path, tmpl: Path, key: BackupKey) -> Path:
    """SESSIONS_PATH with one account backed up twice, then its folder deleted."""
    root = tmp_path / "sessions"
    make_session(tmpl, root / A / "session.db", rows=50)
    vault, _ = make_vault(root, FirestoreBackupStore(clean_firestore), keys=Keyring(key))
    vault.backup(A, JID, 3, taken_while_connected=False)
    make_session(tmpl, root / A / "session.db", rows=60)
    vault.backup(A, JID, 3, taken_while_connected=True)
    shutil.rmtree(root / A)
    return root


@pytest.fixture
def shm_root() -> Iterator[Path]:
    root = Path("/dev/shm") / f"wa-keeper-vault-cli-{emulator.project_id()}"
    root.mkdir(exist_ok=True)
    yield root / "sessions"
    shutil.rmtree(root, ignore_errors=True)


def cli(*args: str, sessions: Path, key: BackupKey | None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(
        SESSIONS_PATH=str(sessions),
        GOOGLE_CLOUD_PROJECT=emulator.project_id(),
        WA_KEEPER_CONNECTOR_ID="cli-test-host",
        **extra,
    )
    env.pop("WA_KEEPER_BACKUP_KEY", None)
    if key is not None:
        env["WA_KEEPER_BACKUP_KEY"] = key_base64(key)
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=sessions.parent,
        check=False,
    )


def test_backups_lists_generations(backed_up: Path, key: BackupKey) -> None:
    listed = cli("backups", A, "--json", sessions=backed_up, key=key)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["generation"], r["good"], r["epoch"], r["connector"]) for r in rows] == [
        ("2", "yes", "3", "conn-vault-test"),
        ("1", "no", "3", "conn-vault-test"),
    ]
    table = cli("backups", A, sessions=backed_up, key=key)
    assert table.returncode == 0 and "generation" in table.stdout and key.key_id in table.stdout


def test_restore_local_puts_the_newest_good_generation_on_disk(backed_up: Path, key: BackupKey) -> None:
    done = cli("restore", A, "--local", sessions=backed_up, key=key)
    assert done.returncode == 0, done.stderr
    assert "generation 2" in done.stdout
    vault, _ = make_vault(backed_up, FirestoreBackupStore(firestore.Client(project=emulator.project_id())))
    assert vault.check_disk(A).jid == JID
    again = cli("restore", A, "--local", "--generation", "1", sessions=backed_up, key=key)
    assert again.returncode == 0 and "generation 1" in again.stdout


def test_restore_local_with_a_wrong_key_is_one_line_naming_the_key_id(
    backed_up: Path, key: BackupKey
) -> None:
    failed = cli("restore", A, "--local", sessions=backed_up, key=new_key())
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and key.key_id in lines[0], failed.stderr
    assert not (backed_up / A / "session.db").exists()


def test_restore_local_refuses_while_a_connector_holds_the_lease(
    backed_up: Path, key: BackupKey, clean_firestore: firestore.Client
) -> None:
    clean_firestore.document(f"{Collections.LEASES}/{A}").set(
        {"holder": "conn-live", "epoch": 3, "ttl_ms": 600_000, "renewed_at": firestore.SERVER_TIMESTAMP}
    )
    refused = cli("restore", A, "--local", sessions=backed_up, key=key)
    assert refused.returncode == 1 and "conn-live" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_restore_without_local_issues_a_command(
    backed_up: Path, key: BackupKey, clean_firestore: firestore.Client
) -> None:
    clean_firestore.document(f"{Collections.ACCOUNTS}/{A}").set({"status": "connected"}, merge=True)
    waited = cli("restore", A, "--generation", "1", "--timeout", "0.5", sessions=backed_up, key=key)
    assert waited.returncode == 1 and "did not finish" in waited.stderr  # no connector runs here
    (command,) = [d.to_dict() or {} for d in clean_firestore.collection(Collections.COMMANDS).stream()]
    assert (command["account_id"], command["action"], command["params"]) == (A, "restore", {"generation": 1})


def test_tmpfs_warns_and_require_persistent_exits_1_with_one_line(shm_root: Path, key: BackupKey) -> None:
    doctor = cli("doctor", sessions=shm_root, key=key)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert status_of(doctor.stdout, "sessions persistent") == "warn" and "tmpfs" in doctor.stdout
    strict = cli("doctor", "--require-persistent", sessions=shm_root, key=key)
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines() == ["wa-keeper: doctor: 1 check(s) failed: sessions persistent"]
    restore = cli("restore", A, "--local", "--require-persistent", sessions=shm_root, key=key)
    assert restore.returncode == 1
    (line,) = restore.stderr.strip().splitlines()
    assert "tmpfs" in line and "SESSIONS_PATH persistent" in line


def test_doctor_passes_on_a_good_host(
    tmp_path: Path, key: BackupKey, clean_firestore: firestore.Client
) -> None:
    doctor = cli("doctor", sessions=tmp_path / "sessions", key=key)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    for name in (
        "sessions exists",
        "sessions writable",
        "sessions fsync",
        "sessions persistent",
        "backup key",
    ):
        assert status_of(doctor.stdout, name) == "pass", doctor.stdout
    assert status_of(doctor.stdout, "firestore") == status_of(doctor.stdout, "pubsub") == "pass"
    assert status_of(doctor.stdout, "clock") in ("pass", "warn")
    assert status_of(doctor.stdout, "volume marker") == "warn"  # `run` writes it, not doctor
    assert key.key_id in doctor.stdout


def status_of(output: str, name: str) -> str:
    for line in output.splitlines():
        if line[6:].startswith(name + " "):
            return line[:4].strip()
    raise AssertionError(f"no {name!r} line in {output!r}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("restore", "acct-none", "--local"), "restore of acct-none failed: no backup generation"),
        (("restore", A, "--local", "--generation", "0"), "--generation must be a positive generation number"),
        (("restore", A, "--local", "--generation", "7"), f"restore of {A} failed: no generation 7"),
        (("restore", "../escape", "--local"), "cannot be a folder name under SESSIONS_PATH"),
    ],
    ids=["no backups", "generation 0", "no such generation", "account id escaping SESSIONS_PATH"],
)
def test_bad_restore_requests_are_one_line_errors(
    backed_up: Path, key: BackupKey, args: tuple[str, ...], message: str
) -> None:
    failed = cli(*args, sessions=backed_up, key=key)
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert message in line
    assert sorted(p.name for p in backed_up.iterdir()) == [], "nothing was written"


def test_doctor_fails_clearly_without_key_firestore_or_pubsub(tmp_path: Path) -> None:
    doctor = cli(
        "doctor",
        sessions=tmp_path / "sessions",
        key=None,
        FIRESTORE_EMULATOR_HOST="127.0.0.1:1",
        PUBSUB_EMULATOR_HOST="127.0.0.1:1",
    )
    assert doctor.returncode == 1
    for name in ("backup key", "firestore", "pubsub"):
        assert status_of(doctor.stdout, name) == "fail", doctor.stdout
    (line,) = doctor.stderr.strip().splitlines()
    assert line == "wa-keeper: doctor: 3 check(s) failed: backup key, firestore, pubsub"
