"""Optimistic fenced writes against the emulator: a lease that changes between the read and
the commit is seen, the check itself never moves the lease, endless conflicts give up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.cloud import firestore

from connector.adapters.firestore_cas import (
    KnownLease,
    LeaseFence,
    LeaseVersions,
    WriteConflictError,
    fenced_epoch,
    optimistic,
    verify,
)
from connector.lease_record import LeaseRecord
from connector.ports import StaleEpochError

PROBE = "cas_probe"


def lease(db: firestore.Client, account: str) -> firestore.DocumentReference:
    return db.collection("leases").document(account)


def test_a_takeover_between_read_and_commit_refuses_the_write(clean_firestore: firestore.Client) -> None:
    lease(clean_firestore, "acct-1").set({"epoch": 3, "holder": "conn-a"})
    attempts: list[int] = []

    def body(batch: firestore.WriteBatch) -> None:
        current = fenced_epoch(batch, clean_firestore, "acct-1")
        attempts.append(current)
        if len(attempts) == 1:  # another host takes the lease after our read
            lease(clean_firestore, "acct-1").set({"epoch": 4, "holder": "conn-b"})
        if current != 3:
            raise StaleEpochError(f"epoch 3 is older than {current}")
        batch.set(clean_firestore.collection(PROBE).document("acct-1"), {"by": "conn-a"})

    with pytest.raises(StaleEpochError):
        optimistic(clean_firestore, body)
    assert attempts == [3, 4]
    assert not clean_firestore.collection(PROBE).document("acct-1").get().exists


def test_the_fence_does_not_move_the_lease(clean_firestore: firestore.Client) -> None:
    """Verifying rewrites the epoch with its own value: update_time stays, renewals never conflict."""
    lease(clean_firestore, "acct-1").set({"epoch": 3, "holder": "conn-a"})
    before = lease(clean_firestore, "acct-1").get().update_time

    def body(batch: firestore.WriteBatch) -> None:
        fenced_epoch(batch, clean_firestore, "acct-1")
        batch.set(clean_firestore.collection(PROBE).document("acct-1"), {"by": "conn-a"})

    optimistic(clean_firestore, body)
    assert lease(clean_firestore, "acct-1").get().update_time == before
    assert clean_firestore.collection(PROBE).document("acct-1").get().exists


def test_a_missing_lease_is_verified_missing(clean_firestore: firestore.Client) -> None:
    def body(batch: firestore.WriteBatch) -> int:
        epoch = fenced_epoch(batch, clean_firestore, "acct-new")
        batch.set(clean_firestore.collection(PROBE).document("acct-new"), {"by": "conn-a"})
        return epoch

    assert optimistic(clean_firestore, body)[0] == 0
    assert not lease(clean_firestore, "acct-new").get().exists


def test_endless_conflicts_give_up_with_a_transient_error(clean_firestore: firestore.Client) -> None:
    ref = lease(clean_firestore, "acct-1")
    ref.set({"epoch": 1, "n": 0})

    def body(batch: firestore.WriteBatch) -> None:
        snap = ref.get()
        verify(batch, clean_firestore, snap, "epoch")
        ref.update({"n": firestore.Increment(1)})  # someone always writes in between

    with pytest.raises(WriteConflictError):
        optimistic(clean_firestore, body)


def lease_fields(epoch: int, holder: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return LeaseRecord("acct-1", holder, epoch, 15_000, now, now, epoch - 1).to_fields()


def fenced_probe(db: firestore.Client, versions: LeaseVersions, epoch: int, value: str) -> list[int]:
    """A write at `epoch` fenced by LeaseFence; returns the epoch each attempt saw."""
    fence = LeaseFence(db, "acct-1", versions)
    seen: list[int] = []

    def body(batch: firestore.WriteBatch) -> None:
        current = fence.epoch(batch)
        seen.append(current)
        if epoch < current:
            raise StaleEpochError(f"epoch {epoch} is older than {current}")
        batch.set(db.collection(PROBE).document("acct-1"), {"by": value})

    optimistic(db, body)
    return seen


def test_a_known_lease_version_fences_without_a_read_and_a_stale_one_costs_a_read(
    clean_firestore: firestore.Client,
) -> None:
    ref = lease(clean_firestore, "acct-1")
    versions = LeaseVersions()
    assert fenced_probe(clean_firestore, versions, 0, "no lease yet") == [0]  # read: nothing known
    assert versions.get("acct-1") == KnownLease(None, None)
    assert fenced_probe(clean_firestore, versions, 0, "known missing") == [0]

    ref.set(lease_fields(3, "conn-a"))  # written behind the versions' back
    assert fenced_probe(clean_firestore, versions, 3, "holder a") == [0, 3]  # conflict, then read
    known = versions.get("acct-1")
    assert known is not None and known.epoch == 3 and known.update_time == ref.get().update_time
    before = ref.get().update_time
    assert fenced_probe(clean_firestore, versions, 3, "trusted") == [3]
    assert ref.get().update_time == before, "the check leaves the lease as it was"

    ref.set(lease_fields(4, "conn-b"))  # a takeover the versions have not seen
    with pytest.raises(StaleEpochError, match="epoch 3 is older than 4"):
        fenced_probe(clean_firestore, versions, 3, "stale a")
    with pytest.raises(StaleEpochError):  # now known: refused without a commit
        fenced_probe(clean_firestore, versions, 3, "stale a again")
    assert (clean_firestore.collection(PROBE).document("acct-1").get().to_dict() or {}) == {"by": "trusted"}
