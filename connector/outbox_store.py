"""The outbox's SQLite file: one row per event that Pub/Sub has not acknowledged yet.

WAL journal with `synchronous=FULL`: a stored event survives a crash or a power
cut. The file is locked exclusively while open, so a second process on the same
volume gets a clear error instead of sending the same events twice. Any thread
may call `add`; one lock serialises access to the connection, and the threads that
`add` at the same time share one transaction (a group commit: one fsync for all).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from connector.errors import KeeperError
from connector.ports import EventMessage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
)
"""


class OutboxError(KeeperError):
    """The outbox cannot store or read events; the message says which file and why."""


class OutboxFullError(OutboxError):
    """The outbox holds its maximum number of events; the new one was not stored."""


class OutboxClosedError(OutboxError):
    """An event was emitted after the outbox was closed."""


Row = tuple[EventMessage, str, float]
"""An event to store: its message, type and enqueue time."""


@dataclass
class _Waiting:
    """One `add` waiting for the transaction that stores its row."""

    row: Row
    result: bool | Exception | None = None


@dataclass(frozen=True)
class StoredEvent:
    """One queued event: its row number (the send order), type, enqueue time and message."""

    seq: int
    event_type: str
    enqueued_at: float
    message: EventMessage

    @property
    def account_id(self) -> str:
        return self.message.ordering_key


class OutboxStore:
    """The rows of one outbox file; `depth` is kept in memory to make `add` cheap."""

    def __init__(self, path: Path, max_events: int) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.path = path
        self.max_events = max_events
        self._lock = threading.Lock()
        self._adds = threading.Condition()  # guards the rows `add` queued and who commits them
        self._queued: list[_Waiting] = []
        self._adding = False
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot create the outbox folder {path.parent}: {exc.strerror}") from exc
        self._db = self._open(path)
        self.depth: int = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("BEGIN IMMEDIATE")  # takes the lock now, not at the first emit
            _check_or_create_schema(db, path)  # before anything changes a file that is not ours
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc):
                raise OutboxError(f"the outbox {path} is in use by another process") from exc
            raise OutboxError(f"cannot use the outbox {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            db.close()
            raise OutboxError(f"{path} is not an outbox database: {exc}") from exc
        except OutboxError:
            db.close()
            raise
        return db

    def add(self, message: EventMessage, event_type: str, enqueued_at: float) -> bool:
        """Store one event; False if its event_id is already queued (a repeat emit).

        Returns once it is stored. Rows added while a transaction of `add` runs wait and go
        together in the next one: a takeover's restores each store an event from a thread of
        their own, and one fsync each, in turn, held them all up.
        """
        waiting = _Waiting((message, event_type, enqueued_at))
        batch: list[_Waiting] = []
        with self._adds:
            self._queued.append(waiting)
            while self._adding and waiting.result is None:
                self._adds.wait()
            if waiting.result is None:  # nobody is committing: this thread commits the queue
                self._adding = True
                batch, self._queued = self._queued, []
        if batch:
            interrupted = OutboxError("event not stored: the thread storing it was interrupted")
            results: list[bool | Exception] = [interrupted] * len(batch)
            try:
                results = list(self.add_many([w.row for w in batch]))
            except Exception as exc:  # the whole transaction failed: every row in it
                results = [exc] * len(batch)
            finally:  # whatever happened, the rows waiting on this commit are answered
                with self._adds:
                    for queued, outcome in zip(batch, results, strict=True):
                        queued.result = outcome
                    self._adding = False
                    self._adds.notify_all()
        result = waiting.result
        if isinstance(result, Exception):
            raise result
        assert result is not None
        return result

    def add_many(self, items: Sequence[Row]) -> list[bool | OutboxError]:
        """Store events in one transaction (one fsync); per event as `add` answers, or the
        OutboxError that refused it (the outbox full: the rest are refused alone)."""
        with self._lock:
            if self._closed:
                raise OutboxClosedError(f"the outbox {self.path} is closed; {len(items)} event(s) not stored")
            results: list[bool | OutboxError] = []
            depth = self.depth
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for message, event_type, enqueued_at in items:
                    if depth >= self.max_events:
                        results.append(
                            OutboxFullError(
                                f"the outbox is full ({self.max_events} events wait for Pub/Sub); "
                                f"event {message.event_id} of {message.ordering_key} not stored"
                            )
                        )
                        continue
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO events (event_id, account_id, event_type, data, attributes,"
                        " enqueued_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            message.event_id,
                            message.ordering_key,
                            event_type,
                            message.data,
                            json.dumps(dict(message.attributes), sort_keys=True),
                            enqueued_at,
                        ),
                    )
                    depth += cursor.rowcount
                    results.append(cursor.rowcount == 1)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                ids = ", ".join(message.event_id for message, _, _ in items[:3])
                raise OutboxError(f"cannot store event(s) {ids} in {self.path}: {exc}") from exc
            self.depth = depth
            return results

    def oldest(self, limit: int, exclude: Collection[str] = ()) -> list[StoredEvent]:
        """Up to `limit` rows in send order, skipping the accounts in `exclude`."""
        marks = ",".join("?" * len(exclude))
        query = (
            "SELECT seq, event_id, account_id, event_type, data, attributes, enqueued_at FROM events"
            f" WHERE account_id NOT IN ({marks}) ORDER BY seq LIMIT ?"
        )
        with self._lock, self._sql("read"):
            rows = self._db.execute(query, (*exclude, limit)).fetchall()
        return [
            StoredEvent(
                seq=seq,
                event_type=event_type,
                enqueued_at=enqueued_at,
                message=EventMessage(event_id, account_id, bytes(data), json.loads(attributes)),
            )
            for seq, event_id, account_id, event_type, data, attributes, enqueued_at in rows
        ]

    def settle(self, acked: Sequence[int], failed: Sequence[int], error: str) -> None:
        """In one transaction: forget acknowledged rows; count a failed attempt (and keep
        the last error, for operators) on the others."""
        with self._lock, self._sql("record publish outcomes in"):
            deleted = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(acked):
                    marks = ",".join("?" * len(chunk))
                    deleted += self._db.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk).rowcount
                for chunk in _chunks(failed):
                    marks = ",".join("?" * len(chunk))
                    self._db.execute(
                        f"UPDATE events SET attempts = attempts + 1, last_error = ? WHERE seq IN ({marks})",
                        (error[:500], *chunk),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self.depth -= deleted

    @contextlib.contextmanager
    def _sql(self, what: str) -> Iterator[None]:
        if self._closed:
            raise OutboxClosedError(f"the outbox {self.path} is closed")
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot {what} the outbox {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def _check_or_create_schema(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables -= {"sqlite_sequence"}
    if version > SCHEMA_VERSION:
        raise OutboxError(
            f"{path} was written by a newer wa-keeper (outbox schema {version} > {SCHEMA_VERSION})"
        )
    if version == 0 and tables:
        raise OutboxError(f"{path} is not an outbox database (it has tables: {', '.join(sorted(tables))})")
    if version == SCHEMA_VERSION and "events" not in tables:
        raise OutboxError(f"{path} is not an outbox database (no events table)")
    db.execute(_SCHEMA)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _chunks(seqs: Sequence[int], size: int = 500) -> list[list[int]]:
    return [list(seqs[i : i + size]) for i in range(0, len(seqs), size)]
