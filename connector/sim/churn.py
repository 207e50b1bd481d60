"""Simulated key churn: while a device is connected, real traffic rewrites rows of
`whatsmeow_pre_keys` and `whatsmeow_sessions`; the sim worker does the same, so
backups of a sim session see real change. Rows are upserted within a bounded key
space, so the file changes without growing for ever.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

PRE_KEY_SLOTS = 100
CONTACT_SLOTS = 50


def churn(path: Path, jid: str) -> None:
    """Replace one pre-key and one Signal session of `jid` with fresh random bytes."""
    key_id = 1 + secrets.randbelow(PRE_KEY_SLOTS)
    contact = f"1555{1000000 + secrets.randbelow(CONTACT_SLOTS)}.0:0"
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.execute(
            "INSERT OR REPLACE INTO whatsmeow_pre_keys (jid, key_id, key, uploaded) VALUES (?, ?, ?, ?)",
            (jid, key_id, secrets.token_bytes(32), True),
        )
        db.execute(
            "INSERT OR REPLACE INTO whatsmeow_sessions (our_jid, their_id, session) VALUES (?, ?, ?)",
            (jid, contact, secrets.token_bytes(160)),
        )


def churn_delays(interval_s: float, phase: float) -> Iterator[float]:
    """Seconds before each key churn of one connection: the first at `phase` (0 to 1) of the
    interval, then one interval apart. Real traffic does not keep step with the login; with
    a random phase, sessions that logged in together (a takeover) do not all change at the
    same moment, so they are not all changed, or all backed up, at once."""
    if not (interval_s > 0 and 0.0 <= phase <= 1.0):
        raise ValueError(f"churn needs an interval > 0 and a phase in [0, 1], not {interval_s} and {phase}")
    yield interval_s * phase
    while True:
        yield interval_s
