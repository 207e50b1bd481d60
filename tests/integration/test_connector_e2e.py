"""`wa-keeper run` end to end: sim-server, connector processes, the emulators (issue #5)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - the from-form hides the module from mypy
import pytest
from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from tests import emulator
from tests.integration.stack_support import EventLog, Stack, stack, wait_until
from tests.pubsub_pull import PullSubscription, unique_topic
from wa_wire import Collections

ACCOUNTS = [f"acct-{n}" for n in range(1, 6)]


@pytest.fixture
def topic() -> str:
    name = unique_topic("e2e")
    client = pubsub_v1.PublisherClient()
    with contextlib.suppress(AlreadyExists):
        client.create_topic(name=client.topic_path(emulator.project_id(), name))
    return name


@pytest.fixture
def events(topic: str) -> Iterator[EventLog]:
    subscription = PullSubscription(topic)
    yield EventLog(subscription)
    subscription.close()


@pytest.fixture
def e2e(tmp_path: Path, clean_firestore: firestore.Client, topic: str) -> Iterator[Stack]:
    with stack(tmp_path, clean_firestore, topic) as running:
        yield running


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def good_backup(e2e: Stack, account: str) -> bool:
    backup = e2e.account(account).get("backup") or {}
    return bool(backup.get("good"))


def generations(client: firestore.Client, account: str) -> list[int]:
    backups = client.collection(Collections.ACCOUNTS).document(account).collection("backups")
    return sorted(int((d.to_dict() or {})["generation"]) for d in backups.stream())


def test_kill_9_and_a_wiped_disk_restore_every_account_without_a_qr(e2e: Stack, events: EventLog) -> None:
    conn = e2e.start_connector("conn-a")
    jids = {account: e2e.pair(account) for account in ACCOUNTS}
    for account in ACCOUNTS:
        wait_until(f"a good backup of {account}", functools.partial(good_backup, e2e, account), 30)
    workers = children(conn.popen.pid)
    assert workers, "the connector runs its sim worker as a child process"

    conn.signal(signal.SIGKILL)
    conn.popen.wait(10)
    wait_until("no orphan worker", lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 15)
    shutil.rmtree(e2e.sessions_path("conn-a"))

    e2e.start_connector("conn-a")
    for account in ACCOUNTS:
        doc = e2e.wait_status(account, "connected", 60)
        assert doc["jid"] == jids[account]
        assert "qr" not in doc
    _code, pending = e2e.sim_api("GET", "/api/qr")
    assert pending["pending"] == []
    restored = events.wait_for("restored", set(ACCOUNTS), 60)
    restart_epochs = {e["account_id"]: e["lease_epoch"] for e in restored}
    pairing_after_restart = [
        e for e in events.of("pairing") if e["lease_epoch"] >= restart_epochs[e["account_id"]]
    ]
    assert pairing_after_restart == []


def test_faults_515_drop_worker_kill_and_a_corrupt_disk_heal(e2e: Stack) -> None:
    conn = e2e.start_connector("conn-a")
    e2e.pair("acct-1")
    wait_until("a good backup", functools.partial(good_backup, e2e, "acct-1"), 30)

    def connections() -> int:
        return len(e2e.connections("acct-1"))

    before = connections()
    e2e.fault("acct-1", fault="restart")
    wait_until(
        "reconnected after 515",
        lambda: connections() > before and e2e.account("acct-1").get("status") == "connected",
        30,
    )

    before = connections()
    e2e.fault("acct-1", fault="drop")
    wait_until(
        "reconnected after a drop",
        lambda: connections() > before and e2e.account("acct-1").get("status") == "connected",
        60,
    )

    before = connections()
    for pid in children(conn.popen.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(
        "reconnected after the worker was killed",
        lambda: connections() > before and e2e.account("acct-1").get("status") == "connected",
        60,
    )

    before = connections()
    session = e2e.sessions_path("conn-a") / "acct-1" / "session.db"
    with session.open("r+b") as handle:
        handle.seek(0)
        handle.write(b"this is not an SQLite file any more" * 50)
    wait_until(
        "reconnected after the disk file was corrupted",
        lambda: connections() > before and e2e.account("acct-1").get("status") == "connected",
        60,
    )
    aside = list(session.parent.glob("session.db.corrupt-*"))
    assert aside, "the corrupt file is kept aside, not deleted"


def test_an_unlinked_device_is_reported_and_nothing_is_wiped(e2e: Stack, events: EventLog) -> None:
    e2e.start_connector("conn-a")
    e2e.pair("acct-1")
    wait_until("a good backup", functools.partial(good_backup, e2e, "acct-1"), 30)
    kept = generations(e2e.client, "acct-1")
    assert kept

    e2e.fault("acct-1", fault="unlink")
    doc = e2e.wait_status("acct-1", "needs_restore", 30)
    assert "logged" in doc["status_reason"]
    assert generations(e2e.client, "acct-1")[: len(kept)] == kept
    events.wait_for("logged_out", {"acct-1"}, 30)
    assert not events.of("wiped")
