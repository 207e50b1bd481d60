"""Session files on this host's disk: check, snapshot, and install atomically.

Everything here opens session files with Python's sqlite3, so it runs in the
supervisor process only, never in a process that loaded neonize (NOTES.md).

What a snapshot hashes: the snapshot is a copy made with SQLite's backup API
(a consistent image of the database as readers see it, WAL frames included)
with its volatile header fields set to fixed values: the file change counter
and "version-valid-for" (offsets 24 and 92, bumped by commits even when no row
changed) and the journal-mode bytes (18-19, always WAL). Everything else is the
database's pages, so an unchanged session gives byte-identical snapshots (and
equal sha256) whatever its checkpoint state or the number of copies taken, and
the snapshot is still a valid SQLite file that installs as it is. A file with no
journal beside it that hashes, so canonicalised, to a snapshot already checked is
that snapshot: `snapshot` then needs no SQLite at all (`_same_file`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from connector.clock import Clock
from connector.errors import KeeperError
from connector.sessions.whatsmeow import DEVICE_TABLE, SESSION_FILE

WRITE_PIECE = 1024 * 1024
RESTORING_SUFFIX = ".restoring"
DRIVEN_FILE = "driven-epoch"
"""Beside session.db: the lease epoch under which this copy was last driven (vault.ensure_session)."""
KEEP_PREVIOUS = 2
"""Replaced healthy files kept aside per account; corrupt ones are never deleted."""

Opener = Callable[[Path], BinaryIO]
"""Opens a new file for writing; injected so tests can make a write fail (ENOSPC)."""


class DiskState(StrEnum):
    MISSING = "missing"
    CORRUPT = "corrupt"
    NO_DEVICE = "no_device"
    OK = "ok"


@dataclass(frozen=True)
class DiskHealth:
    state: DiskState
    jid: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Snapshot:
    """A checked, canonical copy of a session (see the module docstring)."""

    data: bytes = field(repr=False)
    sha256: str
    jid: str

    @property
    def size(self) -> int:
        return len(self.data)


Fingerprint = tuple[tuple[int, int, int, int] | None, ...]
"""`DiskSessions.fingerprint`: (inode, size, mtime, ctime) of the file, its -wal and -journal."""


@dataclass(frozen=True)
class Checked:
    """The sha256 and jid of a snapshot that passed the full check."""

    sha256: str
    jid: str


class SessionCheckError(KeeperError):
    """A session (on disk or restored bytes) fails its checks; `state` says which."""

    def __init__(self, state: DiskState | str, message: str) -> None:
        super().__init__(message)
        self.state = state


class SessionDiskError(KeeperError):
    """The disk refused a write (full, read-only, gone); the session already there is untouched."""


def canonical(data: bytes) -> bytes:
    image = bytearray(data)
    image[18:20] = b"\x02\x02"
    image[24:28] = (1).to_bytes(4, "big")
    image[92:96] = (1).to_bytes(4, "big")
    return bytes(image)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inspect(db: sqlite3.Connection, thorough: bool) -> DiskHealth:
    """Integrity (full or quick check) and the device row of an open database."""
    try:
        pragma = "integrity_check" if thorough else "quick_check"
        problems = [str(row[0]) for row in db.execute(f"PRAGMA {pragma}(5)")]
        if problems != ["ok"]:
            return DiskHealth(DiskState.CORRUPT, detail=f"{pragma}: {'; '.join(problems)[:300]}")
        has_table = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (DEVICE_TABLE,)
        ).fetchone()
        if has_table is None:
            return DiskHealth(DiskState.CORRUPT, detail=f"no {DEVICE_TABLE} table: not a whatsmeow session")
        row = db.execute(f"SELECT jid FROM {DEVICE_TABLE} LIMIT 1").fetchone()
    except sqlite3.DatabaseError as exc:
        return DiskHealth(DiskState.CORRUPT, detail=f"sqlite: {exc}")
    if row is None:
        return DiskHealth(DiskState.NO_DEVICE, detail="no device row (logged out)")
    return DiskHealth(DiskState.OK, jid=str(row[0]))


def require_ok(health: DiskHealth, expected_jid: str | None, what: str) -> str:
    """The jid of a healthy session for `expected_jid` (any jid when None), else raise."""
    if health.state is not DiskState.OK or health.jid is None:
        raise SessionCheckError(health.state, f"{what}: {health.detail}")
    if expected_jid is not None and health.jid != expected_jid:
        raise SessionCheckError("wrong_jid", f"{what}: holds jid {health.jid}, expected {expected_jid}")
    return health.jid


def check_bytes(data: bytes, expected_jid: str | None, what: str) -> str:
    """Full checks of a snapshot held in memory; returns its jid."""
    image = bytearray(data)
    if len(image) >= 100:
        image[18:20] = b"\x01\x01"  # an in-memory database cannot be in WAL mode
    db = sqlite3.connect(":memory:")
    try:
        try:
            db.deserialize(bytes(image))
        except sqlite3.DatabaseError as exc:
            raise SessionCheckError(DiskState.CORRUPT, f"{what}: not an SQLite database ({exc})") from exc
        return require_ok(inspect(db, thorough=True), expected_jid, what)
    finally:
        db.close()


def _open_new(path: Path) -> BinaryIO:
    return open(path, "xb")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_account_id(account: str) -> str:
    """Account ids become folder names and document ids: refuse what could escape SESSIONS_PATH
    or is not a valid Firestore document id."""
    reserved = account.startswith("__") and account.endswith("__")  # Firestore's reserved document ids
    if (
        not account
        or len(account) > 128
        or account.startswith(".")
        or reserved
        or any(c in account for c in "/\\\0")
    ):
        raise KeeperError(f"account id {account[:140]!r} cannot be a folder name under SESSIONS_PATH")
    return account


class DiskSessions:
    """`SESSIONS_PATH/{account}/session.db` files, in whatsmeow's schema."""

    def __init__(self, root: Path, clock: Clock, opener: Opener = _open_new) -> None:
        self.root = root
        self._clock = clock
        self._open = opener

    def folder(self, account: str) -> Path:
        return self.root / check_account_id(account)

    def path(self, account: str) -> Path:
        return self.folder(account) / SESSION_FILE

    def check(self, account: str, thorough: bool = False) -> DiskHealth:
        path = self.path(account)
        if not path.is_file():
            return DiskHealth(DiskState.MISSING, detail=f"no session file at {path}")
        try:
            db = sqlite3.connect(path)
        except sqlite3.DatabaseError as exc:
            return DiskHealth(DiskState.CORRUPT, detail=f"sqlite: {exc}")
        try:
            return inspect(db, thorough)
        finally:
            db.close()

    def snapshot(self, account: str, expected_jid: str | None, checked: Checked | None = None) -> Snapshot:
        """A consistent, fully checked copy; SessionCheckError when it must not become a backup.

        `checked`: a snapshot known to pass the full check (the newest backup). A session with
        the very same bytes is neither copied through SQLite nor checked again: a handoff
        snapshots every session, most of them unchanged, and that work was most of it.
        """
        path = self.path(account)
        what = f"session of {account}"
        if not path.is_file():
            raise SessionCheckError(DiskState.MISSING, f"{what}: no session file at {path}")
        if checked is not None:
            same = self._same_file(path, checked.sha256)
            if same is not None:
                jid = require_ok(DiskHealth(DiskState.OK, jid=checked.jid), expected_jid, what)
                return Snapshot(data=same, sha256=checked.sha256, jid=jid)
        copy = sqlite3.connect(":memory:")
        try:
            try:
                source = sqlite3.connect(path)
                try:
                    source.backup(copy)
                finally:
                    source.close()
            except sqlite3.DatabaseError as exc:
                raise SessionCheckError(DiskState.CORRUPT, f"{what}: sqlite: {exc}") from exc
            data = canonical(copy.serialize())
            sha256 = sha256_hex(data)
            if checked is not None and sha256 == checked.sha256:
                jid = require_ok(DiskHealth(DiskState.OK, jid=checked.jid), expected_jid, what)
            else:
                jid = require_ok(inspect(copy, thorough=True), expected_jid, what)
        finally:
            copy.close()
        return Snapshot(data=data, sha256=sha256, jid=jid)

    @staticmethod
    def _same_file(path: Path, sha256: str) -> bytes | None:
        """The file's canonical bytes when they hash to `sha256`, read without SQLite; else None.

        Only with no journal beside it, before and after the read: the file then holds the
        whole database (a WAL with commits not yet checkpointed, or a transaction under way,
        would make the file alone say less). Bytes that hash to a known snapshot are that
        snapshot, so a read that overlapped a write can only fail to match.
        """
        journals = [path.with_name(path.name + suffix) for suffix in ("-wal", "-journal")]
        if any(journal.exists() for journal in journals):
            return None
        try:
            data = canonical(path.read_bytes())
        except OSError:
            return None
        if sha256_hex(data) != sha256 or any(journal.exists() for journal in journals):
            return None
        return data

    def install(self, account: str, data: bytes, sha256: str) -> Path | None:
        """Put restored bytes in place atomically; returns where the replaced file went.

        Temporary file, fsync, read back and compare, move the old file (and its
        -wal/-shm, which must never meet the new file) aside, rename, fsync the
        folder. A crash at any step leaves the old file or the new one, never a
        torn one; a failed write leaves the old file untouched.
        """
        folder = self.folder(account)
        path, tmp = folder / SESSION_FILE, folder / (SESSION_FILE + RESTORING_SUFFIX)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            with self._open(tmp) as out:
                for start in range(0, len(data), WRITE_PIECE):
                    out.write(data[start : start + WRITE_PIECE])
                out.flush()
                os.fsync(out.fileno())
            if sha256_hex(tmp.read_bytes()) != sha256:
                raise SessionDiskError(f"{tmp}: the written file does not read back as written")
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise SessionDiskError(
                f"cannot write the restored session of {account} to {tmp}: {exc.strerror or exc}"
            ) from exc
        health = self.check(account)
        aside = self.set_aside(account, "corrupt" if health.state is DiskState.CORRUPT else "previous")
        os.replace(tmp, path)
        fsync_dir(folder)
        return aside

    def set_aside(self, account: str, label: str) -> Path | None:
        """Rename the session file (and its -wal/-shm) to `session.db.<label>-<time>`; never delete it."""
        folder = self.folder(account)
        path = folder / SESSION_FILE
        stamp = self._clock.now().strftime("%Y%m%dT%H%M%S.%fZ")
        aside = folder / f"{SESSION_FILE}.{label}-{stamp}"
        for suffix in ("-wal", "-shm"):  # first: a stray -wal must never meet a new file
            extra = folder / (SESSION_FILE + suffix)
            if extra.exists():
                os.replace(extra, folder / (aside.name + suffix))
        if not path.exists():
            if folder.is_dir():
                fsync_dir(folder)
            return None
        os.replace(path, aside)
        fsync_dir(folder)
        if label == "previous":
            self._prune(folder, "previous")
        return aside

    def _prune(self, folder: Path, label: str) -> None:
        olds = sorted(folder.glob(f"{SESSION_FILE}.{label}-*[0-9]Z"))
        for old in olds[:-KEEP_PREVIOUS]:
            for suffix in ("", "-wal", "-shm"):
                (folder / (old.name + suffix)).unlink(missing_ok=True)

    def fingerprint(self, account: str) -> Fingerprint | None:
        """What changes whenever the session's files do: inode, size and times of the file and
        of its journals. A check made under one fingerprint holds while it stays the same.
        None when there is no session file (or it cannot be looked at)."""
        path = self.path(account)
        parts: list[tuple[int, int, int, int] | None] = []
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
            try:
                stat = file.stat()
            except FileNotFoundError:
                parts.append(None)
                continue
            except OSError:
                return None
            parts.append((stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
        return None if parts[0] is None else tuple(parts)

    def driven_epoch(self, account: str) -> int | None:
        """The lease epoch under which this disk copy was last driven (`mark_driven`); None when
        unknown (never recorded, or unreadable: then the copy is judged by its health alone)."""
        try:
            text = (self.folder(account) / DRIVEN_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def mark_driven(self, account: str, epoch: int) -> None:
        """Record that the disk copy is driven under `epoch` from now on (atomic replace; a lost
        record only makes the next start judge the copy by its health alone)."""
        folder = self.folder(account)
        tmp = folder / (DRIVEN_FILE + ".tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)  # before a pairing, nothing is there yet
            tmp.write_text(f"{epoch}\n", encoding="ascii")
            os.replace(tmp, folder / DRIVEN_FILE)
        except OSError as exc:
            raise SessionDiskError(f"{folder / DRIVEN_FILE}: cannot record the lease epoch: {exc}") from exc

    def clear_leftovers(self, account: str) -> bool:
        """Remove a temporary file a crashed restore left behind; True when there was one."""
        tmp = self.folder(account) / (SESSION_FILE + RESTORING_SUFFIX)
        if tmp.exists():
            tmp.unlink()
            return True
        return False
