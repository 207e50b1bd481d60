"""on_request_created end to end: rules (REST as app users) -> functions emulator -> answer and command.

Needs the functions emulator, so it runs only under `make test`; anywhere else
it fails with a line saying so (a skip would hide a missing part).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
from google.cloud import firestore

from tests import emulator
from tests.integration.test_rules import ADMIN, OWNER, STRANGER, create
from wa_wire import CommandAction, command_id_for

# The first call of a function in the emulator starts its Python process (~10 s).
DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def functions_emulator(clean_firestore: firestore.Client) -> firestore.Client:
    hub = os.environ.get("FIREBASE_EMULATOR_HUB")
    if not hub:
        pytest.fail(
            "FIREBASE_EMULATOR_HUB not set: this test needs the functions emulator; run it with 'make test'"
        )
    running = requests.get(f"http://{hub}/emulators", timeout=10).json()
    if "functions" not in running:
        pytest.fail(f"the functions emulator is not running (hub lists {sorted(running)}); run 'make test'")
    clean_firestore.document("accounts/acct-1").set({"owners": [OWNER], "status": "connected"})
    return clean_firestore


def answer(db: firestore.Client, request_id: str) -> dict[str, Any]:
    path = f"requests/{request_id}"
    return emulator.wait_for_document(db, path, lambda d: "status" in d, DEADLINE_S)


def request(account: str = "acct-1", by: str = OWNER, **extra: Any) -> dict[str, Any]:
    return {"account_id": account, "action": "reconnect", "params": {}, "requested_by": by, **extra}


def test_an_owners_request_through_the_rules_becomes_a_command(functions_emulator: firestore.Client) -> None:
    db = functions_emulator
    assert create(OWNER, "requests", "req-owner", request()) == 200
    decided = answer(db, "req-owner")
    cid = command_id_for("req-owner", CommandAction.RECONNECT)
    assert decided["status"] == "accepted" and decided["command_id"] == cid
    command = db.document(f"commands/{cid}").get().to_dict() or {}
    assert command["issued_by"] == f"app:{OWNER}" and command["status"] == "pending"


def test_an_admins_request_is_accepted(functions_emulator: firestore.Client) -> None:
    assert create(ADMIN, "requests", "req-admin", request(by=ADMIN, admin=True)) == 200
    assert answer(functions_emulator, "req-admin")["status"] == "accepted"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (request(by=STRANGER), "is neither an owner"),
        (request(extra="x"), "extra: unknown field"),
        ({**request(), "action": "explode"}, "action: must be one of"),
        (request(account="a" * 129), "account_id: longer than 128"),
    ],
)
def test_requests_the_rules_would_refuse_are_rejected_by_the_function_too(
    functions_emulator: firestore.Client, data: dict[str, Any], error: str
) -> None:
    """Written with server credentials (no rules): the function's own checks must hold."""
    db = functions_emulator
    db.document("requests/req-bad").set(data)
    decided = answer(db, "req-bad")
    assert decided["status"] == "rejected" and error in decided["error"]
    assert list(db.collection("commands").stream()) == []
