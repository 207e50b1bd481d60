"""Restoring sessions from Firestore: the vault against a Baileys-style key-per-document baseline.

Printed, never asserted. Against the Firestore emulator (it refuses anything else):
- vault: A accounts with ~S MiB whatsmeow sessions, backed up by the vault, then
  restored into an empty SESSIONS_PATH (manifest + encrypted chunks per account);
- baseline: the same rows stored the way Baileys' Firestore auth-state adapters do
  (one document per key, JSON with base64 buffers) and read back key by key with
  one `get()` each; it only decodes into memory and is given the key ids, both of
  which favour it. It may run on fewer accounts; figures are compared per account;
- backups of an unchanged session (target: 0 writes) and of one with one changed row.

    FIRESTORE_EMULATOR_HOST=127.0.0.1:9180 GOOGLE_CLOUD_PROJECT=demo-vault-bench \
        .venv/bin/python bench/vault.py --accounts 200 --baseline-accounts 20

Measured 2026-11-26 on the 2-vCPU development machine (quiet), 200 sessions of
1.05 MiB (each compresses into one chunk of <= 900 KiB):
  vault     200 accounts in 2.01 s = 99.5 accounts/s; 200 reads (1.00 per account,
            the newest good manifest with chunk 0 inline) = 0.84 reads per 900 KiB
            of session (target <= 1); 131.5 MiB read
  baseline  20 accounts in 8.87 s = 2.26 accounts/s; 651 reads per account
  ratio     44.1x faster per account (target >= 10x), 651x fewer reads
  backup of an unchanged session: 0 writes, 0 bytes; of one changed row: 5 writes
  (generation, manifest, summary, 2 lease checks), 689,569 bytes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from google.cloud import firestore

from connector.adapters.disk_sessions import DiskSessions
from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.backup_crypto import MAX_CHUNK_BYTES, Keyring
from connector.clock import SystemClock
from connector.ports import MemoryEventSink
from connector.sessions.whatsmeow import DeviceKeys, copy_template, make_schema, write_device
from connector.settings import BackupKey
from connector.vault import SessionVault

BASELINE_COLLECTION = "bench_baileys_auth"
"""The baseline's own collection (not part of the contract; deleted with the bench data)."""
TABLES = ("whatsmeow_sessions", "whatsmeow_message_secrets")
ROW_BYTES = 1024
MIB = 1024 * 1024
LOCK = threading.Lock()


def reset(project: str) -> None:
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    requests.delete(url, timeout=60).raise_for_status()


def make_sessions(template: Path, root: Path, accounts: list[str], size_mib: float) -> None:
    """whatsmeow sessions of about `size_mib` each: a device row plus random key rows."""
    for index, account in enumerate(accounts):
        path = root / account / "session.db"
        jid = f"1555{index:07d}:7@s.whatsapp.net"
        copy_template(template, path)
        write_device(path, DeviceKeys.random(jid))
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            rows = 0
            while path.stat().st_size < size_mib * MIB * 0.97:
                batch = [(jid, f"peer{rows + i}@s.whatsapp.net.0", os.urandom(ROW_BYTES)) for i in range(64)]
                db.executemany(
                    "INSERT INTO whatsmeow_sessions (our_jid, their_id, session) VALUES (?,?,?)", batch
                )
                db.execute(
                    "INSERT INTO whatsmeow_message_secrets (our_jid, chat_jid, sender_jid, message_id, key)"
                    " VALUES (?,?,?,?,?)",
                    (jid, "chat@g.us", jid, f"MSG{rows}", os.urandom(ROW_BYTES)),
                )
                rows += 64
                db.commit()
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def baileys_docs(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every row as Baileys would keep it: `{type}-{id}` -> JSON with base64 buffers."""

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"type": "Buffer", "data": base64.b64encode(value).decode()}
        return value

    with contextlib.closing(sqlite3.connect(path)) as db:
        for table in ("whatsmeow_device", *TABLES):
            cursor = db.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            for number, row in enumerate(cursor):
                key = f"{table.removeprefix('whatsmeow_')}-{number}"
                yield key, {"value": json.dumps({n: encode(v) for n, v in zip(names, row, strict=True)})}


def write_baseline(db: firestore.Client, root: Path, account: str) -> list[str]:
    keys = db.collection(BASELINE_COLLECTION).document(account).collection("keys")
    ids, batch = [], db.batch()
    for count, (key, doc) in enumerate(baileys_docs(root / account / "session.db"), 1):
        batch.set(keys.document(key), doc)
        ids.append(key)
        if count % 400 == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()
    return ids


def restore_baseline(db: firestore.Client, account: str, ids: list[str], tally: dict[str, int]) -> None:
    """Key by key, as the adapters' `keys.get` does: one document read per key."""
    keys = db.collection(BASELINE_COLLECTION).document(account).collection("keys")
    state: dict[str, Any] = {}
    for key in ids:
        value = (keys.document(key).get().to_dict() or {})["value"]
        with LOCK:
            tally["reads"] += 1
            tally["bytes"] += len(value)
        state[key] = json.loads(value)
    assert len(state) == len(ids)


def timed(threads: int, items: list[str], work: Callable[[str], object]) -> tuple[float, list[object]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(work, items))
    return time.perf_counter() - start, results


class Bench:
    def __init__(self, db: firestore.Client, work: Path, threads: int) -> None:
        self.db, self.work, self.threads = db, work, threads
        self.clock = SystemClock()
        self.keys = Keyring(BackupKey.from_base64(base64.b64encode(os.urandom(32)).decode(), "bench key"))

    def vault_at(self, root: Path, store: FirestoreBackupStore) -> SessionVault:
        disk = DiskSessions(root, self.clock)
        return SessionVault(disk, store, self.keys, MemoryEventSink(), clock=self.clock, connector_id="bench")

    def setup(self, accounts: list[str], size_mib: float) -> int:
        template = self.work / "template" / "session.db"
        make_schema(template)
        make_sessions(template, self.work / "source", accounts, size_mib)
        total = sum((self.work / "source" / a / "session.db").stat().st_size for a in accounts)
        print(f"setup: {len(accounts)} sessions, {total / len(accounts) / MIB:.2f} MiB each on average")
        store = FirestoreBackupStore(self.db)
        writer = self.vault_at(self.work / "source", store)
        seconds, _ = timed(self.threads, accounts, lambda a: writer.backup(a, None, 1, True))
        print(f"setup: backed up in {seconds:.1f} s ({store.stats.writes} writes)")
        return total

    def vault_restore(self, accounts: list[str], total_bytes: int) -> tuple[float, float]:
        store = FirestoreBackupStore(self.db)
        reader = self.vault_at(self.work / "restored", store)
        seconds, results = timed(self.threads, accounts, lambda a: reader.restore(a, 1))
        assert all(getattr(r, "ok", False) for r in results), "every restore must succeed"
        rate, reads = len(accounts) / seconds, store.stats.reads
        lister = FirestoreBackupStore(self.db)  # its reads are not the restore's
        chunks = sum(lister.manifests(a)[0].chunk_count for a in accounts)
        units = total_bytes / MAX_CHUNK_BYTES
        print(
            f"vault:    {len(accounts)} accounts in {seconds:.2f} s = {rate:.1f} accounts/s; "
            f"reads {reads} ({reads / len(accounts):.2f}/account, {chunks / len(accounts):.2f} chunks/account; "
            f"chunk 0 rides in the manifest); {reads / chunks:.2f} reads per chunk of <= 900 KiB; "
            f"{reads / units:.2f} reads per 900 KiB of session; bytes read {store.stats.bytes_read / MIB:.1f} MiB"
        )
        return rate, reads / len(accounts)

    def baseline_restore(self, accounts: list[str]) -> tuple[float, float]:
        ids = {a: write_baseline(self.db, self.work / "source", a) for a in accounts}
        tally = {"reads": 0, "bytes": 0}
        seconds, _ = timed(self.threads, accounts, lambda a: restore_baseline(self.db, a, ids[a], tally))
        rate = len(accounts) / seconds
        print(
            f"baseline: {len(accounts)} accounts in {seconds:.2f} s = {rate:.2f} accounts/s; "
            f"reads {tally['reads']} ({tally['reads'] / len(accounts):.0f}/account); "
            f"bytes read {tally['bytes'] / MIB:.1f} MiB"
        )
        return rate, tally["reads"] / len(accounts)

    def backups(self, account: str) -> None:
        path = self.work / "restored" / account / "session.db"
        for label, change in (("an unchanged session", False), ("one changed row", True)):
            if change:
                with contextlib.closing(sqlite3.connect(path)) as conn, conn:
                    conn.execute(
                        "UPDATE whatsmeow_sessions SET session = ? WHERE rowid = 1", (os.urandom(ROW_BYTES),)
                    )
            store = FirestoreBackupStore(self.db)
            outcome = self.vault_at(self.work / "restored", store).backup(account, None, 1, True)
            print(
                f"backup of {label}: {outcome.status.value}; writes {store.stats.writes}, "
                f"bytes {store.stats.bytes_written:,} (reads {store.stats.reads})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--baseline-accounts", type=int, default=20)
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=8, help="accounts restored at once (both runs)")
    args = parser.parse_args()
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        print("bench/vault.py writes and deletes data: run it against the emulator only", file=sys.stderr)
        return 2
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-vault-bench")
    reset(project)
    work = Path(tempfile.mkdtemp(prefix="wa-keeper-bench-vault-"))
    try:
        bench = Bench(firestore.Client(project=project), work, args.threads)
        accounts = [f"bench-{i:04d}" for i in range(args.accounts)]
        total = bench.setup(accounts, args.size_mib)
        vault_rate, vault_reads = bench.vault_restore(accounts, total)
        base_rate, base_reads = bench.baseline_restore(accounts[: args.baseline_accounts])
        print(
            f"ratio:    vault {vault_rate / base_rate:.1f}x faster per account, "
            f"{base_reads / vault_reads:.0f}x fewer reads per account"
        )
        bench.backups(accounts[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        reset(project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
