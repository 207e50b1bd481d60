"""What the CLI does in Firestore: issue commands, watch accounts, wait for results.

Server-side code with service credentials (rules do not apply). Every wait has
a deadline and ends with one clear line on failure.
"""

from __future__ import annotations

import getpass
import os
import threading
import time
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
POLL_S = 2.0
"""How often `watch_document` also reads the document it listens to."""
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
    *,
    listen: bool = True,
    poll_s: float = POLL_S,
) -> dict[str, Any] | None:
    """Call `on_change` with each version of a document until it returns True; None at the deadline.

    A listener brings each change at once; the document is also read every `poll_s`, because
    a listener can miss a change made while it was being set up, or stop silently (NOTES.md):
    once, a command finished 0.6 s after it was issued and the listener never showed it.
    `on_change` may see a version twice; it is never called from two threads at once.
    """
    done = threading.Event()
    lock = threading.Lock()
    last: dict[str, Any] = {}

    def seen(data: dict[str, Any]) -> None:
        with lock:
            last.clear()
            last.update(data)
            if not done.is_set() and on_change(data):
                done.set()

    def listener(docs: list[Any], _changes: Any, _read_time: Any) -> None:
        for doc in docs:
            if doc.exists:
                seen(doc.to_dict() or {})

    ref = client.document(path)
    watch = ref.on_snapshot(listener) if listen else None
    end = time.monotonic() + deadline_s
    try:
        while not done.wait(max(0.0, min(poll_s, end - time.monotonic()))):
            if time.monotonic() >= end:
                return None
            try:
                snap = ref.get()
            except gexc.GoogleAPIError:  # the listener may still bring it; the next read tries again
                continue
            if snap.exists:
                seen(snap.to_dict() or {})
        with lock:
            return dict(last)
    finally:
        if watch is not None:
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
