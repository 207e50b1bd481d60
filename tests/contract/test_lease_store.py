"""The lease store contract: the same cases against the in-memory fake and the Firestore emulator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from connector.adapters.firestore_cas import fenced_epoch, optimistic
from connector.adapters.firestore_leases import FirestoreLeaseStore
from connector.adapters.memory_leases import MemoryLeaseStore
from connector.adapters.memory_status import MemoryStatusWriter
from connector.lease_record import LeaseError, LeaseRecord, LeaseView, fence
from connector.ports import LeaseStore, Shown, StaleEpochError
from wa_wire import AccountStatus, Collections

TTL_MS = 15_000
PROBE = "lease_probe"


@dataclass
class Rig:
    store: LeaseStore
    put_raw: Callable[[str, dict[str, Any]], object]
    read_raw: Callable[[str], dict[str, Any] | None]
    fenced_write: Callable[[str, int, str], None]  # a write fenced on the lease, as other adapters do
    probes: Callable[[], dict[str, str]]
    shown: Callable[[str], dict[str, Any] | None]  # the account document's status fields
    extra: list[Any] = field(default_factory=list)


def memory_rig() -> Rig:
    accounts = MemoryStatusWriter()
    fake = MemoryLeaseStore(shows=accounts.write_sync)
    probes: dict[str, str] = {}

    def fenced_write(account: str, epoch: int, value: str) -> None:
        fake.check_epoch(account, epoch)
        probes[account] = value

    return Rig(
        store=fake,
        put_raw=fake.docs.__setitem__,
        read_raw=fake.docs.get,
        fenced_write=fenced_write,
        probes=lambda: dict(probes),
        shown=accounts.docs.get,
    )


def firestore_rig(client: firestore.Client) -> Rig:
    leases = client.collection(Collections.LEASES)

    def fenced_write(account: str, epoch: int, value: str) -> None:
        def body(batch: firestore.WriteBatch) -> None:
            fence(account, fenced_epoch(batch, client, account), epoch)
            batch.set(client.collection(PROBE).document(account), {"value": value})

        optimistic(client, body)

    def probes() -> dict[str, str]:
        return {doc.id: (doc.to_dict() or {})["value"] for doc in client.collection(PROBE).stream()}

    def shown(account: str) -> dict[str, Any] | None:
        return client.collection(Collections.ACCOUNTS).document(account).get().to_dict()

    return Rig(
        store=FirestoreLeaseStore(client),
        put_raw=lambda account, data: leases.document(account).set(data),
        read_raw=lambda account: leases.document(account).get().to_dict(),
        fenced_write=fenced_write,
        probes=probes,
        shown=shown,
    )


@pytest.fixture(params=["memory", "firestore"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        yield memory_rig()
    else:
        yield firestore_rig(request.getfixturevalue("clean_firestore"))


async def acquire(rig: Rig, account: str, holder: str, expected: LeaseRecord | None = None) -> LeaseRecord:
    view = await rig.store.try_acquire(account, holder, TTL_MS, expected)
    assert view.written and view.record is not None and view.record.holder == holder
    return view.record


# ---- reading


async def test_a_missing_lease_reads_as_none_at_epoch_0(rig: Rig) -> None:
    view = await rig.store.get("acct")
    assert view.record is None
    assert view.server_now is not None
    assert await rig.store.current_epoch("acct") == 0


async def test_get_many_answers_in_the_order_asked_with_missing_ones(rig: Rig) -> None:
    await acquire(rig, "b", "conn-a")
    views = await rig.store.get_many(["c", "b", "a"])
    assert [v.account for v in views] == ["c", "b", "a"]
    assert [v.holder() for v in views] == [None, "conn-a", None]


# ---- acquiring


async def test_the_first_acquire_creates_epoch_1_stamped_by_the_store(rig: Rig) -> None:
    view = await rig.store.try_acquire("acct", "conn-a", TTL_MS, None)
    record = view.record
    assert view.written and record is not None
    assert (record.holder, record.epoch, record.ttl_ms, record.transitions) == ("conn-a", 1, TTL_MS, 0)
    assert record.renewed_at == record.acquired_at == view.server_now
    assert (await rig.store.get("acct")).record == record  # returned exactly as stored
    assert await rig.store.current_epoch("acct") == 1


async def test_an_acquire_from_a_stale_view_writes_nothing(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    view = await rig.store.try_acquire("acct", "conn-b", TTL_MS, None)
    assert not view.written
    assert view.record == first
    assert (await rig.store.get("acct")).record == first


async def test_taking_over_increments_the_epoch_and_the_transitions(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    second = await acquire(rig, "acct", "conn-b", expected=first)
    assert (second.epoch, second.transitions) == (2, 1)
    assert second.acquired_at > first.acquired_at
    stale = await rig.store.renew("acct", "conn-a", 1, TTL_MS)
    assert not stale.written
    assert stale.record == second


async def test_reacquiring_its_own_lease_moves_the_epoch_but_not_the_transitions(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    again = await acquire(rig, "acct", "conn-a", expected=first)
    assert (again.epoch, again.transitions) == (2, 0)


async def test_of_two_racing_acquires_exactly_one_wins(rig: Rig) -> None:
    views = await asyncio.gather(
        rig.store.try_acquire("acct", "conn-a", TTL_MS, None),
        rig.store.try_acquire("acct", "conn-b", TTL_MS, None),
    )
    assert sorted(v.written for v in views) == [False, True]
    winner = next(v for v in views if v.written)
    assert (await rig.store.get("acct")).record == winner.record


# ---- renewing and releasing


async def test_a_renewal_moves_renewed_at_only(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    view = await rig.store.renew("acct", "conn-a", 1, TTL_MS)
    renewed = view.record
    assert view.written and renewed is not None
    assert renewed.renewed_at > first.renewed_at
    assert renewed.renewed_at == view.server_now
    assert (renewed.epoch, renewed.acquired_at, renewed.holder) == (1, first.acquired_at, "conn-a")
    assert (await rig.store.get("acct")).record == renewed


@pytest.mark.parametrize(("holder", "epoch"), [("conn-b", 1), ("conn-a", 2), ("conn-a", 0)])
async def test_a_renewal_by_another_holder_or_epoch_writes_nothing(rig: Rig, holder: str, epoch: int) -> None:
    first = await acquire(rig, "acct", "conn-a")
    view = await rig.store.renew("acct", holder, epoch, TTL_MS)
    assert not view.written
    assert (await rig.store.get("acct")).record == first


async def test_a_renewal_of_a_missing_lease_writes_nothing(rig: Rig) -> None:
    view = await rig.store.renew("acct", "conn-a", 1, TTL_MS)
    assert not view.written and view.record is None
    assert rig.read_raw("acct") is None


async def test_after_a_release_the_next_holder_takes_the_next_epoch(rig: Rig) -> None:
    await acquire(rig, "acct", "conn-a")
    released = await rig.store.release("acct", "conn-a", 1)
    assert released.written and released.record is not None
    assert (released.record.holder, released.record.epoch) == (None, 1)
    assert not (await rig.store.renew("acct", "conn-a", 1, TTL_MS)).written
    taken = await acquire(rig, "acct", "conn-b", expected=released.record)
    assert (taken.epoch, taken.transitions) == (2, 1)


async def test_a_release_by_someone_else_writes_nothing(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    assert not (await rig.store.release("acct", "conn-b", 1)).written
    assert not (await rig.store.release("acct", "conn-a", 2)).written
    assert (await rig.store.get("acct")).record == first


# ---- statuses shown with a lease write


def status_of(rig: Rig, account: str) -> tuple[object, ...] | None:
    doc = rig.shown(account)
    if doc is None:
        return None
    return tuple(doc.get(k) for k in ("status", "status_reason", "holder", "lease_epoch"))


async def test_an_acquire_shows_its_status_held_at_the_new_epoch(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    taking = Shown(AccountStatus.CONNECTING, "checking")
    view = await rig.store.try_acquire("acct", "conn-b", TTL_MS, first, taking)
    assert view.written
    assert status_of(rig, "acct") == ("connecting", "checking", "conn-b", 2)


async def test_an_acquire_that_writes_nothing_shows_nothing(rig: Rig) -> None:
    await acquire(rig, "acct", "conn-a")
    view = await rig.store.try_acquire("acct", "conn-b", TTL_MS, None, Shown(AccountStatus.CONNECTING, "x"))
    assert not view.written
    assert status_of(rig, "acct") is None


async def test_a_release_shows_its_status_at_the_released_epoch(rig: Rig) -> None:
    await acquire(rig, "acct", "conn-a")
    leaving = Shown(AccountStatus.UNATTENDED, "released by conn-a")
    assert not (await rig.store.release("acct", "conn-b", 1, leaving)).written
    assert status_of(rig, "acct") is None
    assert (await rig.store.release("acct", "conn-a", 1, leaving)).written
    assert status_of(rig, "acct") == ("unattended", "released by conn-a", "conn-a", 1)
    doc = rig.shown("acct") or {}
    assert "qr" not in doc


# ---- many at once (a takeover, a handoff)


def held_by_another(account: str, holder: str, epoch: int) -> dict[str, Any]:
    """A lease as another host writes it, behind the back of the store under test."""
    now = datetime.now(UTC).replace(microsecond=0)
    return LeaseRecord(account, holder, epoch, TTL_MS, now, now, 1).to_fields()


async def test_many_acquires_take_each_free_lease_and_show_each(rig: Rig) -> None:
    other = await acquire(rig, "b", "conn-x")
    taking = Shown(AccountStatus.CONNECTING, "checking")
    views = await rig.store.try_acquire_many(
        [("a", None), ("b", None), ("c", None)], "conn-a", TTL_MS, taking
    )
    assert [(v.account, v.written, v.holder()) for v in views] == [
        ("a", True, "conn-a"),
        ("b", False, "conn-x"),
        ("c", True, "conn-a"),
    ]
    assert views[1].record == other
    assert status_of(rig, "a") == status_of(rig, "c") == ("connecting", "checking", "conn-a", 1)
    assert status_of(rig, "b") is None
    assert [(await rig.store.get(a)).record for a in "abc"] == [v.record for v in views]


async def test_a_lease_taken_since_the_store_last_saw_it_costs_only_its_own_acquire(rig: Rig) -> None:
    """The Firestore store stages all of them on the leases as last read, in one commit; one
    lease changed since fails that commit, and only that account is left out."""
    accounts = [f"acct-{i}" for i in range(7)]
    await rig.store.get_many(accounts)  # all missing, as far as the store knows
    rig.put_raw("acct-3", held_by_another("acct-3", "conn-x", 4))
    views = await rig.store.try_acquire_many([(a, None) for a in accounts], "conn-a", TTL_MS)
    assert [v.written for v in views] == [a != "acct-3" for a in accounts]
    assert [v.holder() for v in views] == ["conn-x" if a == "acct-3" else "conn-a" for a in accounts]
    assert [(await rig.store.get(a)).holder() for a in accounts] == [v.holder() for v in views]


async def test_many_releases_release_each_lease_still_held(rig: Rig) -> None:
    for account in "abc":
        await acquire(rig, account, "conn-a")
    rig.put_raw("c", held_by_another("c", "conn-b", 2))  # taken over behind conn-a's back
    leaving = Shown(AccountStatus.UNATTENDED, "released by conn-a")
    views = await rig.store.release_many([("a", 1), ("b", 1), ("c", 1)], "conn-a", leaving)
    assert [(v.account, v.written, v.holder()) for v in views] == [
        ("a", True, None),
        ("b", True, None),
        ("c", False, "conn-b"),
    ]
    assert status_of(rig, "a") == ("unattended", "released by conn-a", "conn-a", 1)
    assert status_of(rig, "c") is None
    assert (await rig.store.get("c")).holder() == "conn-b"


async def test_an_account_twice_in_one_call_is_refused_before_any_write(rig: Rig) -> None:
    with pytest.raises(LeaseError, match="twice"):
        await rig.store.try_acquire_many([("a", None), ("b", None), ("a", None)], "conn-a", TTL_MS)
    assert rig.read_raw("a") is None and rig.read_raw("b") is None
    await acquire(rig, "a", "conn-a")
    with pytest.raises(LeaseError, match="twice"):
        await rig.store.release_many([("a", 1), ("a", 1)], "conn-a")
    assert (await rig.store.get("a")).holder() == "conn-a"


# ---- fencing other writers


async def test_a_fenced_write_passes_at_the_current_epoch_only(rig: Rig) -> None:
    rig.fenced_write("acct", 0, "no lease yet")  # a missing lease is epoch 0
    first = await acquire(rig, "acct", "conn-a")
    rig.fenced_write("acct", 1, "holder a")
    await acquire(rig, "acct", "conn-b", expected=first)
    with pytest.raises(StaleEpochError, match="older than the current 2"):
        rig.fenced_write("acct", 1, "stale a")
    with pytest.raises(StaleEpochError, match="ahead of the current 2"):
        rig.fenced_write("acct", 3, "from the future")
    assert rig.probes() == {"acct": "holder a"}


# ---- bad input: a clear error, nothing written


@pytest.mark.parametrize("account", ["", "a/b", "x" * 129, "__x__", ".."])
async def test_a_bad_account_id_is_refused(rig: Rig, account: str) -> None:
    for call in (
        lambda: rig.store.get(account),
        lambda: rig.store.get_many(["ok", account]),
        lambda: rig.store.try_acquire(account, "conn-a", TTL_MS, None),
        lambda: rig.store.renew(account, "conn-a", 1, TTL_MS),
        lambda: rig.store.release(account, "conn-a", 1),
        lambda: rig.store.try_acquire_many([("ok", None), (account, None)], "conn-a", TTL_MS),
        lambda: rig.store.release_many([("ok", 1), (account, 1)], "conn-a"),
        lambda: rig.store.current_epoch(account),
    ):
        with pytest.raises(LeaseError, match="account"):
            await call()
    assert rig.read_raw("ok") is None


@pytest.mark.parametrize("holder", ["", "a/b", "h" * 129])
async def test_a_bad_holder_is_refused(rig: Rig, holder: str) -> None:
    with pytest.raises(LeaseError, match="holder"):
        await rig.store.try_acquire("acct", holder, TTL_MS, None)
    with pytest.raises(LeaseError, match="holder"):
        await rig.store.try_acquire_many([("acct", None)], holder, TTL_MS)
    assert rig.read_raw("acct") is None


@pytest.mark.parametrize("ttl_ms", [0, -5, True])
async def test_a_bad_ttl_is_refused(rig: Rig, ttl_ms: int) -> None:
    with pytest.raises(LeaseError, match="ttl_ms"):
        await rig.store.try_acquire("acct", "conn-a", ttl_ms, None)
    with pytest.raises(LeaseError, match="ttl_ms"):
        await rig.store.try_acquire_many([("acct", None)], "conn-a", ttl_ms)
    assert rig.read_raw("acct") is None


async def test_a_malformed_lease_document_is_reported_and_left_alone(rig: Rig) -> None:
    first = await acquire(rig, "acct", "conn-a")
    bad = {**first.to_fields(), "epoch": "seven"}
    rig.put_raw("acct", bad)
    with pytest.raises(LeaseError, match="leases/acct: field epoch"):
        await rig.store.get("acct")
    with pytest.raises(LeaseError, match="leases/acct: field epoch"):
        await rig.store.try_acquire("acct", "conn-b", TTL_MS, first)
    with pytest.raises(LeaseError, match="leases/acct: field epoch"):
        await rig.store.current_epoch("acct")
    with pytest.raises(LeaseError, match="leases/acct: field epoch"):
        rig.fenced_write("acct", 1, "x")
    assert rig.read_raw("acct") == bad


async def test_firestore_acquires_many_in_one_commit_and_halves_around_a_changed_lease(
    clean_firestore: firestore.Client,
) -> None:
    store = FirestoreLeaseStore(clean_firestore)
    accounts = [f"acct-{i:02d}" for i in range(64)]
    await store.get_many(accounts)
    views = await store.try_acquire_many([(a, None) for a in accounts[:32]], "conn-a", TTL_MS)
    assert all(v.written for v in views) and store.commits == 1
    clean_firestore.collection(Collections.LEASES).document("acct-40").set(
        held_by_another("acct-40", "conn-x", 3)
    )
    store.commits, reads = 0, store.reads
    views = await store.try_acquire_many([(a, None) for a in accounts[32:]], "conn-a", TTL_MS)
    assert [v.account for v in views if not v.written] == ["acct-40"]
    # 32 = 2^5: the failing halves of 32, 16, 8, 4, 2 and 1 accounts, the 5 good halves beside
    # them; then acct-40 alone is read, and its rule writes nothing on what the read shows.
    assert store.commits == 6 + 5
    assert store.reads == reads + 1


async def test_firestore_renews_an_unchanged_lease_without_reading_it(
    clean_firestore: firestore.Client,
) -> None:
    """One round trip per renewal (the write's precondition is the update_time of our own
    last write); a change by anyone else makes the store read the lease again."""
    rig = firestore_rig(clean_firestore)
    store = rig.store
    assert isinstance(store, FirestoreLeaseStore)
    (seen,) = await store.get_many(["acct"])
    assert seen.record is None and store.reads == 1
    await acquire(rig, "acct", "conn-a", expected=None)  # the read above was enough
    for _ in range(3):
        assert (await store.renew("acct", "conn-a", 1, TTL_MS)).written
    rig.fenced_write("acct", 1, "a status write")  # checks the lease, does not change it
    assert (await store.renew("acct", "conn-a", 1, TTL_MS)).written
    assert store.reads == 1

    other = FirestoreLeaseStore(clean_firestore)  # another host judges it expired and takes it
    expired = (await other.get("acct")).record
    taken = await other.try_acquire("acct", "conn-b", TTL_MS, expired)
    assert taken.written and taken.record is not None and taken.record.epoch == 2
    view = await store.renew("acct", "conn-a", 1, TTL_MS)
    assert not view.written and view.record == taken.record and store.reads == 2
    assert rig.read_raw("acct") == taken.record.to_fields()


async def test_firestore_renewals_do_not_queue_behind_the_store_s_other_calls(
    clean_firestore: firestore.Client,
) -> None:
    """A handoff of hundreds of accounts puts hundreds of releases in the store's threads; a
    renewal queued behind them missed its deadline and the account was fenced mid-handoff."""
    store = FirestoreLeaseStore(clean_firestore)
    await store.try_acquire("acct", "conn-a", TTL_MS, None)
    gate = threading.Event()
    busy = [store._executor.submit(gate.wait, 30) for _ in range(64)]  # every other call's thread
    try:
        view = await asyncio.wait_for(store.renew("acct", "conn-a", 1, TTL_MS), 20)
        assert view.written
    finally:
        gate.set()
        for future in busy:
            future.result()


async def test_firestore_takes_a_lease_learned_from_its_releaser_without_reading_it(
    clean_firestore: firestore.Client,
) -> None:
    """A clean handoff hint carries the released lease with its version: the next holder's
    acquisition is its first and only round trip. A version gone stale costs a conflict and
    a read, and writes nothing the lease as it now is does not allow."""
    old, new, third = (FirestoreLeaseStore(clean_firestore) for _ in range(3))
    for account in ("acct", "moved"):
        assert (await old.try_acquire_many([(account, None)], "conn-a", TTL_MS))[0].written
    released = await old.release_many([("acct", 1), ("moved", 1)], "conn-a")
    assert all(v.written and v.version for v in released)
    (moved,) = await third.get_many(["moved"])  # taken and given back behind the hint's back
    assert (await third.try_acquire_many([("moved", moved.record)], "conn-c", TTL_MS))[0].written
    assert (await third.release_many([("moved", 2)], "conn-c"))[0].written

    new.learn(released)
    taken, refused = await new.try_acquire_many([(v.account, v.record) for v in released], "conn-b", TTL_MS)
    assert taken.written and taken.record is not None and taken.record.epoch == 2
    assert not refused.written and refused.record is not None
    assert (refused.record.holder, refused.record.epoch) == (None, 2)  # as conn-c left it
    assert new.reads == 1  # only the stale one was read


async def test_a_learned_version_that_is_not_a_time_is_refused(clean_firestore: firestore.Client) -> None:
    store = FirestoreLeaseStore(clean_firestore)
    record = await acquire(firestore_rig(clean_firestore), "acct", "conn-a")
    with pytest.raises(LeaseError, match="not a time"):
        store.learn([LeaseView("acct", record, None, version="yesterday")])
    with pytest.raises(LeaseError):
        MemoryLeaseStore().learn([LeaseView("bad/id", record, None, version="v")])
