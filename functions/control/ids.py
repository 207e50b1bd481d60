"""Which strings may name a Firestore document (ids arrive from events and requests)."""

from __future__ import annotations


def document_id_problem(value: str) -> str | None:
    """Why `value` cannot be a document id, or None when it can.

    Firestore refuses `/`, `.`, `..` and `__*__`; a client library would raise
    deep inside a transaction instead, and Pub/Sub would redeliver forever.
    """
    if "/" in value:
        return "must not contain '/'"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if value.startswith("__") and value.endswith("__"):
        return "must not look like __name__"
    return None
