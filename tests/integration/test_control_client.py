"""`watch_document` against the emulator: the listener, and the reads that back it up."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from google.cloud import firestore

from connector.control_client import watch_document


def finish_once_seen(db: firestore.Client, path: str, seen: threading.Event) -> threading.Thread:
    """Finish the command once the watcher has seen it pending (no guess at how long that takes)."""

    def run() -> None:
        if seen.wait(30):
            db.document(path).update({"status": "claimed"})
            db.document(path).update({"status": "done"})

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("listen", [True, False], ids=["listener", "reads alone"])
def test_a_change_is_seen_by_the_listener_or_by_the_reads_alone(
    clean_firestore: firestore.Client, listen: bool
) -> None:
    """With `listen=False` only the periodic reads can see the change: the path a listener that
    missed it (or stopped silently) leaves."""
    path = "commands/cmd-watch"
    clean_firestore.document(path).set({"status": "pending"})
    statuses: list[str] = []
    pending_seen = threading.Event()

    def on_change(data: dict[str, Any]) -> bool:
        statuses.append(str(data.get("status")))
        pending_seen.set()
        return data.get("status") == "done"

    writer = finish_once_seen(clean_firestore, path, pending_seen)
    try:
        final = watch_document(clean_firestore, path, on_change, 30, listen=listen, poll_s=0.1)
    finally:
        writer.join()
    assert final is not None and final["status"] == "done"
    assert statuses[0] == "pending" and statuses[-1] == "done"


def test_nothing_final_within_the_deadline_is_none(clean_firestore: firestore.Client) -> None:
    clean_firestore.document("commands/cmd-stuck").set({"status": "pending"})
    assert watch_document(clean_firestore, "commands/cmd-stuck", lambda d: False, 0.5, poll_s=0.1) is None
