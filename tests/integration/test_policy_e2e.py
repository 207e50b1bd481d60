"""Logouts end to end: sim-server, a connector, the functions emulator's policy (issue #7).

These publish to the real topic, so `on_lifecycle_event` decides: a logout with
a good backup is retried from that backup (a restore command), a logout that
keeps coming back is wiped after MAX_STRIKES.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from tests.integration.stack_support import Stack, stack, wait_until
from wa_wire import DEFAULT_TOPIC, Collections

MAX_STRIKES = 2  # functions/policy/config.py default (functions/.env.local)
# The functions emulator starts its Python worker on the first event (~10 s).
POLICY_DEADLINE_S = 90.0


@pytest.fixture
def e2e(tmp_path: Path, clean_firestore: firestore.Client) -> Iterator[Stack]:
    with stack(tmp_path, clean_firestore, DEFAULT_TOPIC) as running:
        yield running


def good_backup(e2e: Stack, account: str) -> bool:
    return bool((e2e.account(account).get("backup") or {}).get("good"))


def commands(e2e: Stack, account: str) -> list[dict[str, Any]]:
    docs = (
        e2e.client.collection(Collections.COMMANDS)
        .where(filter=FieldFilter("account_id", "==", account))
        .stream()
    )
    return sorted((d.to_dict() or {} for d in docs), key=lambda c: c["issued_at"])


def test_a_transient_logout_is_restored_from_the_backup_without_a_qr(e2e: Stack) -> None:
    e2e.start_connector("conn-a")
    jid = e2e.pair("acct-1")
    wait_until("a good backup", functools.partial(good_backup, e2e, "acct-1"), 30)

    e2e.fault("acct-1", fault="logout")  # one 401 on the live connection; the device stays linked
    wait_until(
        "a restore command from the policy",
        lambda: [
            c for c in commands(e2e, "acct-1") if c["action"] == "restore" and c["issued_by"] == "policy"
        ],
        POLICY_DEADLINE_S,
    )
    doc = e2e.wait_status("acct-1", "connected", POLICY_DEADLINE_S)
    assert doc["jid"] == jid
    assert "qr" not in doc
    restore = next(c for c in commands(e2e, "acct-1") if c["action"] == "restore")
    wait_until(
        "the restore command done",
        lambda: [c for c in commands(e2e, "acct-1") if c["action"] == "restore" and c["status"] == "done"],
        30,
    )
    assert restore["reason"]
    strikes = wait_until(
        "one strike recorded", lambda: (e2e.account("acct-1").get("strikes") or {}).get("count"), 30
    )
    assert strikes == 1
    _code, pending = e2e.sim_api("GET", "/api/qr")
    assert pending["pending"] == []


def test_a_real_logout_is_wiped_after_bounded_retries(e2e: Stack) -> None:
    e2e.start_connector("conn-a")
    e2e.pair("acct-1")
    wait_until("a good backup", functools.partial(good_backup, e2e, "acct-1"), 30)
    before = len(e2e.connections("acct-1"))

    e2e.fault("acct-1", fault="unlink")  # 401 now and at every later login
    e2e.wait_status("acct-1", "needs_qr", 3 * POLICY_DEADLINE_S)
    wait_until(
        "a wipe command done",
        lambda: [c for c in commands(e2e, "acct-1") if c["action"] == "wipe" and c["status"] == "done"],
        POLICY_DEADLINE_S,
    )
    backups = e2e.client.collection(Collections.ACCOUNTS).document("acct-1").collection("backups")
    assert list(backups.stream()) == []
    session = e2e.sessions_path("conn-a") / "acct-1" / "session.db"
    assert not session.exists()
    attempts = len(e2e.connections("acct-1")) - before
    assert attempts <= MAX_STRIKES + 1, f"{attempts} connection attempts after the unlink"
