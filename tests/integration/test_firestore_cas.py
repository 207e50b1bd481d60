"""Optimistic fenced writes against the emulator: a lease that changes between the read and
the commit is seen, the check itself never moves the lease, endless conflicts give up."""

from __future__ import annotations

import pytest
from google.cloud import firestore

from connector.adapters.firestore_cas import WriteConflictError, fenced_epoch, optimistic, verify
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
