"""What the CLI does in Firestore: issue commands, watch accounts, wait for results.

Server-side code with service credentials (rules do not apply). Every wait has
a deadline and ends with one clear line on failure.
"""

from __future__ import annotations

import getpass
import os
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from connector.clock import Clock
from connector.errors import KeeperError
from connector.settings import Settings
from wa_wire import Collections, Command, CommandAction, CommandStatus, command_id_for, encode
from wa_wire.codec import utc_timestamp

PROBE_TIMEOUT_S = 8.0
COMMAND_TTL_S = 600.0
FINAL = {CommandStatus.DONE.value, CommandStatus.FAILED.value, CommandStatus.REJECTED.value, "expired"}


class FirestoreUnreachable(KeeperError):
    pass


class UnknownAccount(KeeperError):
    pass


def connect(settings: Settings) -> firestore.Client:
    """A Firestore client, probed once so an unreachable database fails fast with one line."""
    client = firestore.Client(project=settings.project)
    where = os.environ.get("FIRESTORE_EMULATOR_HOST") or "Google Cloud"
    try:
        list(client.collection(Collections.ACCOUNTS).limit(1).stream(retry=None, timeout=PROBE_TIMEOUT_S))
    except (gexc.GoogleAPIError, gexc.RetryError) as exc:
        raise FirestoreUnreachable(
            f"Firestore unreachable ({where}, project {settings.project}): {type(exc).__name__}"
        ) from exc
    return client


def cli_issuer() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"[:128]


def account_doc(client: firestore.Client, account: str) -> dict[str, Any]:
    snap = client.collection(Collections.ACCOUNTS).document(account).get()
    if not snap.exists:
        raise UnknownAccount(f"unknown account {account!r} (no accounts/{account} document)")
    return snap.to_dict() or {}


def activate_account(client: firestore.Client, account: str) -> None:
    """Create the account if needed and mark it `desired: active` (connectors pick it up)."""
    ref = client.collection(Collections.ACCOUNTS).document(account)
    ref.set({"desired": "active", "updated_at": firestore.SERVER_TIMESTAMP}, merge=True)


def issue_command(
    client: firestore.Client,
    clock: Clock,
    account: str,
    action: CommandAction,
    *,
    params: dict[str, object] | None = None,
    reason: str = "",
    issued_by: str | None = None,
    ttl_s: float = COMMAND_TTL_S,
) -> str:
    """Write one command; it expires `ttl_s` after now (a connector never claims it later)."""
    now = clock.now()
    source = f"cli-{uuid.uuid4()}"
    command = Command(
        account_id=account,
        action=action,
        params=params or {},
        reason=reason or f"{action.value} requested from the command line",
        issued_by=issued_by or cli_issuer(),
        source_event_id=source,
        issued_at=utc_timestamp(now),
        expires_at=utc_timestamp(now + timedelta(seconds=ttl_s)),
    )
    command_id = command_id_for(source, action)
    client.collection(Collections.COMMANDS).document(command_id).create(encode(command))
    return command_id


def watch_document(
    client: firestore.Client,
    path: str,
    on_change: Callable[[dict[str, Any]], bool],
    deadline_s: float,
) -> dict[str, Any] | None:
    """Call `on_change` with each version of a document until it returns True; None at the deadline."""
    done = threading.Event()
    last: dict[str, Any] = {}

    def listener(docs: list[Any], _changes: Any, _read_time: Any) -> None:
        for doc in docs:
            if doc.exists:
                data = doc.to_dict() or {}
                last.clear()
                last.update(data)
                if on_change(data):
                    done.set()

    watch = client.document(path).on_snapshot(listener)
    try:
        return dict(last) if done.wait(deadline_s) else None
    finally:
        watch.unsubscribe()


def wait_for_command(
    client: firestore.Client, command_id: str, deadline_s: float, on_update: Callable[[str], None]
) -> dict[str, Any]:
    def changed(data: dict[str, Any]) -> bool:
        on_update(str(data.get("status")))
        return data.get("status") in FINAL

    result = watch_document(client, f"{Collections.COMMANDS}/{command_id}", changed, deadline_s)
    if result is None:
        raise KeeperError(
            f"command {command_id} did not finish within {deadline_s:.0f} s (is a connector holding the account?)"
        )
    return result
