"""Helpers for the session-vault tests: whatsmeow session files, keys, a vault on a store.

Session files use the real whatsmeow schema: neonize creates one template per
pytest session (`make_schema`, a subprocess), the rest are copies of it.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from connector.adapters.disk_sessions import DiskSessions, Opener
from connector.adapters.memory_backups import MemoryBackupStore
from connector.backup_crypto import Keyring
from connector.clock import FakeClock
from connector.ports import BackupStore, Manifest, MemoryEventSink, NextCommit
from connector.sessions.whatsmeow import DeviceKeys, copy_template, make_schema, write_device
from connector.settings import BackupKey
from connector.vault import SessionVault
from wa_wire import EventType

JID = "15550001111:7@s.whatsapp.net"
OTHER_JID = "15550002222:3@s.whatsapp.net"
CONNECTOR = "conn-vault-test"


def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty whatsmeow session made by real neonize, once per pytest session."""
    path = tmp_path_factory.getbasetemp() / "whatsmeow-template" / "session.db"
    if not path.exists():
        make_schema(path)
    return path


def new_key(seed: int | None = None) -> BackupKey:
    material = os.urandom(32) if seed is None else bytes([seed]) * 32
    return BackupKey.from_base64(base64.b64encode(material).decode(), "test key")


def make_session(
    template_path: Path, path: Path, jid: str = JID, rows: int = 0, row_bytes: int = 1000
) -> None:
    """A logged-in session at `path` with `rows` rows of random session and message-secret data."""
    copy_template(template_path, path)
    write_device(path, DeviceKeys.random(jid))
    add_rows(path, jid, rows, row_bytes)
    close_stray_connections()
    (path.parent / (path.name + ".new-wal")).unlink(missing_ok=True)  # copy_template's leftover


def close_stray_connections() -> None:
    """`with sqlite3.connect()` commits but does not close; collect such connections now,
    so no test-side connection keeps a session's -wal open."""
    gc.collect()


def add_rows(path: Path, jid: str, rows: int, row_bytes: int = 1000, prefix: str = "peer") -> None:
    """Rows like a busy account's: Signal sessions and message secrets (random, incompressible)."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO whatsmeow_sessions (our_jid, their_id, session) VALUES (?, ?, ?)",
            ((jid, f"{prefix}{i}@s.whatsapp.net.0", os.urandom(row_bytes)) for i in range(rows // 2)),
        )
        db.executemany(
            "INSERT INTO whatsmeow_message_secrets (our_jid, chat_jid, sender_jid, message_id, key)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                (jid, "chat@g.us", f"{prefix}{i}@s.whatsapp.net", f"MSG{i}", os.urandom(row_bytes))
                for i in range(rows - rows // 2)
            ),
        )
    close_stray_connections()


def change_one_row(path: Path, jid: str = JID) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT OR REPLACE INTO whatsmeow_sessions (our_jid, their_id, session) VALUES (?, ?, ?)",
            (jid, "changed@s.whatsapp.net.0", os.urandom(200)),
        )


def make_vault(
    root: Path,
    store: BackupStore,
    keys: Keyring | None = None,
    clock: FakeClock | None = None,
    opener: Opener | None = None,
) -> tuple[SessionVault, MemoryEventSink]:
    events = MemoryEventSink()
    clock = clock or FakeClock()
    disk = DiskSessions(root, clock) if opener is None else DiskSessions(root, clock, opener)
    vault = SessionVault(
        disk, store, keys or Keyring(new_key(1)), events, clock=clock, connector_id=CONNECTOR
    )
    return vault, events


def event_types(events: MemoryEventSink) -> list[EventType]:
    return [e.type for e in events.events]


REPO = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a helper or CLI subprocess: this repo first on the path."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'functions'}", **extra)
    env.pop("WA_KEEPER_BACKUP_KEY_FILE", None)
    return env


def key_base64(key: BackupKey) -> str:
    return base64.b64encode(key.material).decode()


class CountingStore(MemoryBackupStore):
    """Which store calls a backup makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def commit_next(self, account: str, epoch: int, build: Callable[[int], Manifest]) -> NextCommit:
        self.calls.append("commit_next")
        return super().commit_next(account, epoch, build)

    def reserve_generation(self, account: str, epoch: int) -> int:
        self.calls.append("reserve_generation")
        return super().reserve_generation(account, epoch)

    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        self.calls.append("write_chunks")
        super().write_chunks(account, generation, chunks, start)

    def commit(self, manifest: Manifest) -> None:
        self.calls.append("commit")
        super().commit(manifest)

    def orphan_generations(self, account: str) -> list[int]:
        self.calls.append("orphan_generations")
        return super().orphan_generations(account)

    def mark_good(self, account: str, generation: int) -> bool:
        self.calls.append(f"mark_good {generation}")
        return super().mark_good(account, generation)

    def newest(self, account: str) -> Manifest | None:
        self.calls.append("newest")
        return super().newest(account)

    def newest_good(self, account: str) -> Manifest | None:
        self.calls.append("newest_good")
        return super().newest_good(account)

    def manifests(self, account: str, limit: int | None = None) -> list[Manifest]:
        self.calls.append("manifests")
        return super().manifests(account, limit)

    def newest_many(self, accounts: Sequence[str]) -> dict[str, Manifest]:
        self.calls.append("newest_many")
        return super().newest_many(accounts)

    def manifests_named(self, wanted: Mapping[str, int]) -> dict[str, Manifest]:
        self.calls.append("manifests_named")
        return super().manifests_named(wanted)
