"""Helpers for tests that talk to the Firebase emulator suite.

`make test` runs pytest inside `firebase emulators:exec`, which sets
FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST. A test that needs the
emulators fails (it is not skipped) when they are absent: a skip would hide a
missing part.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import requests
from google.cloud import firestore
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

DEFAULT_PROJECT = "demo-wa-keeper"


def project_id() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT", DEFAULT_PROJECT)


def require_emulators() -> None:
    missing = [v for v in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST") if not os.environ.get(v)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set: run emulator tests with 'make test' "
            "(firebase emulators:exec sets them)"
        )


@retry(
    retry=retry_if_exception(
        lambda e: (
            isinstance(e, requests.HTTPError) and e.response is not None and e.response.status_code == 409
        )
    ),
    wait=wait_exponential(multiplier=0.05, max=1),
    stop=stop_after_attempt(10),
    reraise=True,
)
def reset_firestore() -> None:
    """Delete every document of the project (the emulator's REST reset).

    The emulator answers 409 while a transaction (e.g. a function's) holds a
    lock; the reset is then tried again.
    """
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    url = f"http://{host}/emulator/v1/projects/{project_id()}/databases/(default)/documents"
    response = requests.delete(url, timeout=30)
    response.raise_for_status()


def wait_for_document(
    client: firestore.Client,
    path: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> dict[str, Any]:
    """Block until the document at `path` exists and satisfies `predicate`.

    Uses a snapshot listener, so it wakes on the change itself instead of polling.
    Raises TimeoutError with the last seen data when the deadline passes.
    """
    done = threading.Event()
    seen: dict[str, Any] = {}

    def on_change(docs: list[Any], _changes: Any, _read_time: Any) -> None:
        for doc in docs:
            data = doc.to_dict() if doc.exists else None
            if data is not None:
                seen.clear()
                seen.update(data)
                if predicate(data):
                    done.set()

    watch = client.document(path).on_snapshot(on_change)
    try:
        if not done.wait(timeout):
            raise TimeoutError(f"{path} did not reach the expected state in {timeout} s; last seen: {seen}")
        return dict(seen)
    finally:
        watch.unsubscribe()
