"""whatsmeow's session file: where it lives, how a new one is made, its device row.

The schema is whatsmeow's own: `make_schema` lets neonize create it in a short
subprocess (a failed dial through a closed proxy), so the project never copies
whatsmeow's SQL. This module itself never imports neonize: opening a session
file with Python's sqlite3 in a process that loaded neonize corrupted it
(NOTES.md), so everything here runs in the supervisor or a sim worker.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

SESSION_FILE = "session.db"
DEVICE_TABLE = "whatsmeow_device"
SCHEMA_TIMEOUT_S = 60.0


class SchemaError(RuntimeError):
    """neonize could not create the whatsmeow schema."""


def session_file(sessions_path: Path, account_id: str) -> Path:
    """`SESSIONS_PATH/{account}/session.db`."""
    return sessions_path / account_id / SESSION_FILE


def set_wal(path: Path) -> None:
    """Put the file in WAL mode; must happen before Go first opens it (it persists)."""
    with closing(sqlite3.connect(path)) as db, db:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"{path}: journal mode stayed {mode}")


def make_schema(path: Path, python: str = sys.executable) -> None:
    """Create an empty whatsmeow session at `path`: WAL first, then neonize's schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    set_wal(path)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [python, "-m", "connector.sessions.neonize_schema", str(path)],
        capture_output=True,
        text=True,
        timeout=SCHEMA_TIMEOUT_S,
        env=env,
        check=False,
    )
    if proc.returncode != 0 or not has_table(path, DEVICE_TABLE):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SchemaError(f"neonize did not create the schema in {path}: {tail[0]}")


def copy_template(template: Path, path: Path) -> None:
    """A new empty session from a template made once by `make_schema` (cheap for many accounts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with closing(sqlite3.connect(template)) as src, closing(sqlite3.connect(tmp)) as dst:
        src.backup(dst)
    set_wal(tmp)
    tmp.replace(path)


def has_table(path: Path, table: str) -> bool:
    if not path.exists():
        return False
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
    return row is not None


@dataclass(frozen=True)
class DeviceKeys:
    """The key material of one linked device (the `whatsmeow_device` row)."""

    jid: str
    registration_id: int
    noise_key: bytes
    identity_key: bytes
    signed_pre_key: bytes
    signed_pre_key_id: int
    signed_pre_key_sig: bytes
    adv_key: bytes
    adv_account_sig: bytes
    adv_account_sig_key: bytes
    adv_device_sig: bytes

    @classmethod
    def random(cls, jid: str) -> DeviceKeys:
        """Fresh random keys of whatsmeow's lengths (what a pairing would produce)."""
        return cls(
            jid=jid,
            registration_id=secrets.randbelow(2**31),
            noise_key=secrets.token_bytes(32),
            identity_key=secrets.token_bytes(32),
            signed_pre_key=secrets.token_bytes(32),
            signed_pre_key_id=1,
            signed_pre_key_sig=secrets.token_bytes(64),
            adv_key=secrets.token_bytes(32),
            adv_account_sig=secrets.token_bytes(64),
            adv_account_sig_key=secrets.token_bytes(32),
            adv_device_sig=secrets.token_bytes(64),
        )


def write_device(path: Path, device: DeviceKeys) -> None:
    """Insert the device row, replacing any other: the session is now logged in as `device.jid`."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"DELETE FROM {DEVICE_TABLE}")
        db.execute(
            f"INSERT INTO {DEVICE_TABLE} (jid, registration_id, noise_key, identity_key, signed_pre_key,"
            " signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig,"
            " adv_account_sig_key, adv_device_sig) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                device.jid,
                device.registration_id,
                device.noise_key,
                device.identity_key,
                device.signed_pre_key,
                device.signed_pre_key_id,
                device.signed_pre_key_sig,
                device.adv_key,
                b"\x08\x01",
                device.adv_account_sig,
                device.adv_account_sig_key,
                device.adv_device_sig,
            ),
        )


def read_device_jid(path: Path) -> str | None:
    """The jid of the device row, or None when the session is not logged in."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute(f"SELECT jid FROM {DEVICE_TABLE} LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def read_identity(path: Path) -> tuple[str, bytes] | None:
    """(jid, identity public key material) of the device row; what a server checks at connect."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute(f"SELECT jid, noise_key FROM {DEVICE_TABLE} LIMIT 1").fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))


def delete_device(path: Path) -> None:
    """What whatsmeow's `Store.Delete` does on a 401: the row goes (cascading to its keys)."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"DELETE FROM {DEVICE_TABLE}")


def remove_session_dir(sessions_path: Path, account_id: str) -> None:
    shutil.rmtree(sessions_path / account_id, ignore_errors=True)
