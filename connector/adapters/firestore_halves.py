"""Many accounts' fenced writes in one commit, split in halves when one of them conflicts.

Each account's writes carry their own preconditions (the lease as last seen, the
document as read). A batch fails whole when one precondition no longer holds, so a
failing batch is split in halves, and each half committed on its own: k changed
documents among n cost about k·log2(n) extra commits, not n. An item alone in a
failing batch goes to its `alone` path, which reads afresh.

Where many items of a batch can change at once (a connector's own lease renewals
come in batches, as the leases were taken), a caller gives `refresh`: the first
failing batch is read afresh whole and committed once more before it is split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.cloud import firestore

from connector.adapters.firestore_cas import CONFLICTS

T = TypeVar("T")


def commit_in_halves(
    client: firestore.Client,
    items: Sequence[T],
    stage: Callable[[firestore.WriteBatch, T], bool],
    committed: Callable[[T, list[Any]], None],
    alone: Callable[[T], None],
    *,
    conflicts: tuple[type[Exception], ...] = CONFLICTS,
    refresh: Callable[[Sequence[T]], Sequence[T]] | None = None,
) -> int:
    """Commit what `stage` adds to the batch for each item (False: it refused the item and
    recorded why; nothing was added). `committed` gets each item's own write results.
    A commit failing with one of `conflicts` splits (after one `refresh` of the whole
    batch, when given: it returns the items as read again, leaving out any it refused
    and recorded); any other error propagates. Returns the commits tried."""
    batch = client.batch()
    staged: list[tuple[T, int, int]] = []
    for item in items:
        start = len(batch)
        if stage(batch, item):
            staged.append((item, start, len(batch)))
    if not staged:
        return 0
    try:
        results = list(batch.commit())
    except conflicts:
        part = [item for item, _, _ in staged]
        if refresh is not None and len(part) > 1:
            return 1 + commit_in_halves(client, refresh(part), stage, committed, alone, conflicts=conflicts)
        if len(part) == 1:
            alone(part[0])
            return 1
        half = len(part) // 2
        return 1 + sum(
            commit_in_halves(client, piece, stage, committed, alone, conflicts=conflicts)
            for piece in (part[:half], part[half:])
        )
    for item, start, end in staged:
        committed(item, results[start:end])
    return 1
