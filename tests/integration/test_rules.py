"""firestore.rules through the emulator's REST API, as real app users (unsigned mock tokens, NOTES.md).

The rules file is loaded into the emulator for this test's project first, so
the test checks the file in the repository whichever way the emulator started.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from control.requests import decide_request
from policy import PolicyConfig
from tests import emulator

RULES = Path(__file__).parents[2] / "firestore.rules"
ANON, STRANGER, OWNER, ADMIN = None, "uid-stranger", "uid-owner", "uid-admin"
USERS = [ANON, STRANGER, OWNER, ADMIN]
CLOSED = [
    "accounts/acct-1/backups/1",
    "accounts/acct-1/backups/1/chunks/0",
    "leases/acct-1",
    "commands/cmd-1",
    "connectors/conn-a",
    "processed_events/ev-1",
]


def base_url() -> str:
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    return f"http://{host}/v1/projects/{emulator.project_id()}/databases/(default)/documents"


def token(uid: str | None) -> dict[str, str]:
    """The Authorization header of a signed-in app user (firebase's unsigned mock token)."""
    if uid is None:
        return {}
    now = int(time.time())
    project = emulator.project_id()
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "firebase": {"sign_in_provider": "custom", "identities": {}},
    }
    if uid == ADMIN:
        claims["wa_admin"] = True

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return {"Authorization": f"Bearer {part({'alg': 'none', 'type': 'JWT'})}.{part(claims)}."}


def value(obj: object) -> dict[str, Any]:
    """A Python value in the REST API's typed form."""
    if obj is None:
        return {"nullValue": None}
    if isinstance(obj, bool):
        return {"booleanValue": obj}
    if isinstance(obj, int):
        return {"integerValue": str(obj)}
    if isinstance(obj, str):
        return {"stringValue": obj}
    if isinstance(obj, dict):
        return {"mapValue": {"fields": {k: value(v) for k, v in obj.items()}}}
    if isinstance(obj, list):
        return {"arrayValue": {"values": [value(v) for v in obj]}}
    raise TypeError(obj)


def get(uid: str | None, path: str) -> int:
    return requests.get(f"{base_url()}/{path}", headers=token(uid), timeout=10).status_code


def create(uid: str | None, collection: str, doc_id: str, data: dict[str, Any]) -> int:
    body = {"fields": {k: value(v) for k, v in data.items()}}
    url = f"{base_url()}/{collection}?documentId={doc_id}"
    return requests.post(url, json=body, headers=token(uid), timeout=10).status_code


def patch(uid: str | None, path: str, data: dict[str, Any]) -> int:
    body = {"fields": {k: value(v) for k, v in data.items()}}
    return requests.patch(f"{base_url()}/{path}", json=body, headers=token(uid), timeout=10).status_code


def owned_query(uid: str | None) -> int:
    query = {
        "structuredQuery": {
            "from": [{"collectionId": "accounts"}],
            "where": {
                "fieldFilter": {"field": {"fieldPath": "owners"}, "op": "ARRAY_CONTAINS", "value": value(uid)}
            },
        }
    }
    url = f"{base_url()}:runQuery"
    return requests.post(url, json=query, headers=token(uid), timeout=10).status_code


@pytest.fixture(autouse=True)
def rules_and_data(clean_firestore: firestore.Client) -> Iterator[firestore.Client]:
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    body = {"rules": {"files": [{"name": "firestore.rules", "content": RULES.read_text()}]}}
    url = f"http://{host}/emulator/v1/projects/{emulator.project_id()}:securityRules"
    response = requests.put(url, json=body, timeout=30)
    response.raise_for_status()
    errors = [i for i in response.json().get("issues", []) if i.get("severity") == "ERROR"]
    assert not errors, f"firestore.rules does not compile: {errors}"
    db = clean_firestore
    db.document("accounts/acct-1").set({"owners": [OWNER], "status": "connected"})
    db.document("accounts/acct-2").set({"owners": ["uid-other"], "status": "connected"})
    for path in CLOSED:
        db.document(path).set({"x": 1})
    db.document("requests/req-owner").set(request())
    yield db


def request(
    account: str = "acct-1", by: str = OWNER, action: str = "reconnect", **extra: Any
) -> dict[str, Any]:
    return {"account_id": account, "action": action, "params": {}, "requested_by": by, **extra}


@pytest.mark.parametrize("uid", USERS)
@pytest.mark.parametrize("path", CLOSED)
def test_nobody_reads_backups_chunks_leases_commands_connectors_or_dedupe(uid: str | None, path: str) -> None:
    assert get(uid, path) == 403


@pytest.mark.parametrize(
    ("uid", "path", "status"),
    [
        (ANON, "accounts/acct-1", 403),
        (STRANGER, "accounts/acct-1", 403),
        (OWNER, "accounts/acct-1", 200),
        (OWNER, "accounts/acct-2", 403),
        (ADMIN, "accounts/acct-1", 200),
        (ADMIN, "accounts/acct-2", 200),
        (ADMIN, "accounts", 200),
        (OWNER, "accounts", 403),
        (STRANGER, "accounts", 403),
    ],
)
def test_accounts_are_read_by_their_owners_and_admins(uid: str | None, path: str, status: int) -> None:
    assert get(uid, path) == status


def test_owners_may_query_the_accounts_they_own() -> None:
    assert owned_query(OWNER) == 200
    assert owned_query(None) == 403


@pytest.mark.parametrize("uid", USERS)
def test_nobody_writes_accounts_or_commands(uid: str | None) -> None:
    assert patch(uid, "accounts/acct-1", {"owners": [uid or "x"], "status": "connected"}) == 403
    assert create(uid, "accounts", "acct-new", {"owners": [uid or "x"]}) == 403
    command = {"account_id": "acct-1", "action": "wipe", "params": {}, "status": "pending"}
    assert create(uid, "commands", "cmd-new", command) == 403


@pytest.mark.parametrize(
    ("uid", "data"),
    [
        (OWNER, request()),
        (OWNER, request(action="restore", params={"generation": 3})),
        (OWNER, request(action="wipe")),
        (ADMIN, request(account="acct-2", by=ADMIN, admin=True)),
        (ADMIN, request(account="acct-unknown", by=ADMIN, admin=True, action="pair")),
    ],
)
def test_owners_and_admins_create_requests_the_function_accepts(
    rules_and_data: firestore.Client, uid: str, data: dict[str, Any]
) -> None:
    assert create(uid, "requests", "req-new", data) == 200
    decide_request(rules_and_data, "req-new", datetime.now(UTC), PolicyConfig())
    answer = rules_and_data.document("requests/req-new").get().to_dict() or {}
    assert answer["status"] == "accepted", answer.get("error")


@pytest.mark.parametrize(
    ("uid", "data"),
    [
        (ANON, request()),
        (STRANGER, request(by=STRANGER)),
        (OWNER, request(account="acct-2")),
        (OWNER, request(by=STRANGER)),
        (OWNER, request(action="explode")),
        (OWNER, request(action="release")),
        (OWNER, request(extra="x")),
        (OWNER, request(status="accepted")),
        (OWNER, request(account="a" * 129)),
        (OWNER, {**request(), "account_id": 7}),
        (OWNER, {k: v for k, v in request().items() if k != "params"}),
        (OWNER, request(action="restore", params={"generation": "3"})),
        (OWNER, request(action="restore", params={"generation": -1})),
        (OWNER, request(params={"generation": 3})),
        (OWNER, request(admin=True)),
        (STRANGER, request(by=STRANGER, admin=True)),
        (ADMIN, request(by=ADMIN, admin=False)),
    ],
)
def test_malformed_or_unauthorized_requests_are_refused(
    rules_and_data: firestore.Client, uid: str | None, data: dict[str, Any]
) -> None:
    assert create(uid, "requests", "req-bad", data) == 403
    assert not rules_and_data.document("requests/req-bad").get().exists  # so no trigger, no command


def test_a_request_id_over_128_characters_is_refused() -> None:
    assert create(OWNER, "requests", "r" * 129, request()) == 403


def test_requests_are_read_by_their_creator_only_and_never_changed() -> None:
    assert get(OWNER, "requests/req-owner") == 200
    assert get(STRANGER, "requests/req-owner") == 403
    assert get(ANON, "requests/req-owner") == 403
    assert patch(OWNER, "requests/req-owner", {**request(), "status": "accepted"}) == 403
    url = f"{base_url()}/requests/req-owner"
    assert requests.delete(url, headers=token(OWNER), timeout=10).status_code == 403


def test_an_admin_without_the_admin_flag_is_judged_as_an_owner(rules_and_data: firestore.Client) -> None:
    """The rules let it through (admins may create any request); the function cannot see the claim."""
    assert create(ADMIN, "requests", "req-admin", request(account="acct-2", by=ADMIN)) == 200
    decide_request(rules_and_data, "req-admin", datetime.now(UTC), PolicyConfig())
    answer = rules_and_data.document("requests/req-admin").get().to_dict() or {}
    assert answer["status"] == "rejected" and "admin: true" in answer["error"]
