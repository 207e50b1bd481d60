"""Request handling in-process against the Firestore emulator: who is accepted, what is rejected.

The same documents go through the rules in test_rules.py; here the function's
own checks, which must hold even for documents the rules let through.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

import control.requests as requests_module
from connector.adapters.firestore_commands import to_pending
from control.requests import decide_request
from policy import PolicyConfig
from policy.requests import judge
from wa_wire import CommandAction, command_id_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = PolicyConfig()
OWNER, STRANGER, ADMIN = "uid-owner", "uid-stranger", "uid-admin"


@pytest.fixture
def db(clean_firestore: firestore.Client) -> firestore.Client:
    clean_firestore.document("accounts/acct-1").set({"owners": [OWNER], "status": "connected"})
    return clean_firestore


def request(
    account: str = "acct-1", action: str = "reconnect", by: str = OWNER, **extra: Any
) -> dict[str, Any]:
    return {"account_id": account, "action": action, "params": {}, "requested_by": by, **extra}


def submit(db: firestore.Client, data: dict[str, Any], request_id: str = "req-1") -> dict[str, Any]:
    db.document(f"requests/{request_id}").set(data)
    decide_request(db, request_id, NOW, CFG)
    return db.document(f"requests/{request_id}").get().to_dict() or {}


def commands(db: firestore.Client) -> dict[str, dict[str, Any]]:
    return {snap.id: snap.to_dict() or {} for snap in db.collection("commands").stream()}


def test_an_owners_request_becomes_a_command(db: firestore.Client) -> None:
    answer = submit(db, request(action="restore", params={"generation": 3}))
    cid = command_id_for("req-1", CommandAction.RESTORE)
    assert answer["status"] == "accepted" and answer["command_id"] == cid
    stored = commands(db)[cid]
    assert stored["issued_by"] == f"app:{OWNER}" and stored["source_event_id"] == "req-1"
    pending = to_pending(cid, stored)
    assert pending is not None and pending.generation == 3


def test_a_lock_timeout_while_judging_is_retried(
    db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two judges of one request at once (the trigger and a retry) can make the emulator abort
    one transaction on a lock timeout; the request must not stay pending for it."""
    attempts: list[str] = []

    def judge_after_a_lock_timeout(request_id: str, *args: Any) -> Any:
        attempts.append(request_id)
        if len(attempts) == 1:
            raise gexc.Aborted("Transaction lock timeout.")
        return judge(request_id, *args)

    monkeypatch.setattr(requests_module, "judge", judge_after_a_lock_timeout)
    answer = submit(db, request())
    assert answer["status"] == "accepted" and attempts == ["req-1", "req-1"]


def test_an_admin_may_ask_for_any_account(db: firestore.Client) -> None:
    answer = submit(db, request(by=ADMIN, admin=True))
    assert answer["status"] == "accepted" and answer["command_id"] in commands(db)


def test_an_admin_may_ask_for_an_account_without_a_document(db: firestore.Client) -> None:
    answer = submit(db, request(account="acct-new", action="pair", by=ADMIN, admin=True))
    assert answer["status"] == "accepted"


def test_a_stranger_is_rejected(db: firestore.Client) -> None:
    answer = submit(db, request(by=STRANGER))
    assert answer["status"] == "rejected"
    assert (
        answer["error"]
        == f"{STRANGER} is neither an owner of account acct-1 nor an admin (admins: send admin: true)"
    )
    assert "command_id" not in answer and commands(db) == {}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (request(action="explode"), "malformed request: action: must be one of"),
        (request(action="release"), "malformed request: action: must be one of"),
        (request(extra="x"), "malformed request: extra: unknown field"),
        (request(account="a" * 129), "malformed request: account_id: longer than 128 characters"),
        (request(account=""), "malformed request: account_id: must not be empty"),
        (request(by="u" * 129), "malformed request: requested_by: longer than 128 characters"),
        (
            request(action="restore", params={"generation": "3"}),
            "malformed request: params.generation: must be int",
        ),
        (
            request(params={"generation": 3}),
            "malformed request: params.generation: not a parameter of reconnect",
        ),
        (request(admin="yes"), "malformed request: admin: must be a boolean"),
        (
            {"account_id": "acct-1", "action": "wipe", "params": {}},
            "malformed request: requested_by: missing",
        ),
        (request(account="acct-2"), "is neither an owner of account acct-2"),
    ],
)
def test_malformed_or_unauthorized_requests_are_rejected_with_an_error(
    db: firestore.Client, data: dict[str, Any], error: str
) -> None:
    answer = submit(db, data)
    assert answer["status"] == "rejected"
    assert error in answer["error"]
    assert commands(db) == {}


def test_a_uid_too_long_to_name_the_issuer_is_rejected(db: firestore.Client) -> None:
    long_uid = "u" * 126  # "app:" + 126 characters is over the 128 the contract allows
    db.document("accounts/acct-1").update({"owners": [long_uid]})
    answer = submit(db, request(by=long_uid))
    assert answer["status"] == "rejected" and answer["error"].startswith(
        "cannot issue the command: issued_by"
    )
    assert commands(db) == {}


def test_a_request_id_too_long_for_a_source_is_rejected(db: firestore.Client) -> None:
    answer = submit(db, request(), request_id="r" * 129)
    assert answer["status"] == "rejected" and "source_event_id" in answer["error"]


def test_a_second_trigger_changes_nothing(db: firestore.Client) -> None:
    first = submit(db, request())
    ref = db.document("requests/req-1")
    before = ref.get().update_time
    assert decide_request(db, "req-1", NOW, CFG) is None
    assert ref.get().update_time == before and ref.get().to_dict() == first
    assert len(commands(db)) == 1


def test_a_request_that_arrives_decided_is_left_alone(db: firestore.Client) -> None:
    db.document("requests/req-9").set({**request(), "status": "accepted", "command_id": "cmd-made-up"})
    assert decide_request(db, "req-9", NOW, CFG) is None
    assert commands(db) == {}


def test_a_vanished_request_is_ignored(db: firestore.Client) -> None:
    assert decide_request(db, "req-gone", NOW, CFG) is None
