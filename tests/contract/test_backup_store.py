"""The backup store: the same cases against the in-memory fake and Firestore (emulator)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from connector.adapters.firestore_backups import FirestoreBackupStore, manifest_fields
from connector.adapters.memory_backups import MemoryBackupStore
from connector.backup_crypto import MAX_CHUNK_BYTES
from connector.errors import KeeperError
from connector.ports import BackupStore, Manifest, StaleEpochError
from wa_wire.names import Collections, SubCollections


@dataclass
class Rig:
    store: BackupStore
    set_lease_epoch: Callable[[str, int], None]
    summary: Callable[[str], dict[str, Any] | None]


@pytest.fixture(params=["memory", "firestore"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        fake = MemoryBackupStore()
        yield Rig(fake, fake.set_lease_epoch, fake.summaries.get)
        return
    client: firestore.Client = request.getfixturevalue("clean_firestore")

    def set_epoch(account: str, epoch: int) -> None:
        client.collection(Collections.LEASES).document(account).set({"epoch": epoch, "holder": "x"})

    def summary(account: str) -> dict[str, Any] | None:
        data = client.collection(Collections.ACCOUNTS).document(account).get().to_dict() or {}
        backup = data.get("backup")
        return backup if isinstance(backup, dict) else None

    yield Rig(FirestoreBackupStore(client), set_epoch, summary)


def manifest(
    account: str, generation: int, epoch: int = 1, chunk_count: int = 2, good: bool = True
) -> Manifest:
    return Manifest(
        account_id=account,
        generation=generation,
        created_at=datetime(2026, 1, 1, 12, 0, generation, tzinfo=UTC),
        connector_id="conn-a",
        lease_epoch=epoch,
        format=1,
        key_id="kek-0123456789abcdef",
        wrapped_key=os.urandom(60),
        size=1000 + generation,
        sha256=f"{generation:064x}",
        chunk_count=chunk_count,
        taken_while_connected=good,
        good=good,
        jid="15550001111:7@s.whatsapp.net",
    )


def write(rig: Rig, m: Manifest, chunks: list[bytes] | None = None) -> list[bytes]:
    data = chunks or [os.urandom(100) for _ in range(m.chunk_count)]
    rig.store.write_chunks(m.account_id, m.generation, data)
    rig.store.commit(m)
    return data


def write_inline(rig: Rig, m: Manifest) -> list[bytes]:
    """The vault's layout: chunk 0 inline in the manifest, the rest as chunk documents."""
    data = [os.urandom(100) for _ in range(m.chunk_count)]
    rig.store.write_chunks(m.account_id, m.generation, data[1:], start=1)
    rig.store.commit(replace(m, head=data[0]))
    return data


def test_chunk_0_inline_reads_back_with_the_manifest_and_as_a_chunk(rig: Rig) -> None:
    chunks = write_inline(rig, manifest("acct-a", 1, chunk_count=3))
    one = rig.store.manifest("acct-a", 1)
    assert one is not None and one.head == chunks[0]
    assert rig.store.read_chunks("acct-a", 1, 3) == chunks
    assert rig.store.read_chunks("acct-a", 1, 3, start=1) == chunks[1:]
    (listed,) = rig.store.manifests("acct-a")
    assert listed.head is None  # listings leave the bytes out
    assert rig.store.manifest("acct-a", 2) is None


def test_the_older_layout_without_an_inline_chunk_still_reads(rig: Rig) -> None:
    chunks = write(rig, manifest("acct-a", 1, chunk_count=2))
    one = rig.store.manifest("acct-a", 1)
    assert one is not None and one.head is None
    assert rig.store.read_chunks("acct-a", 1, 2) == chunks


def test_newest_good_skips_newer_unconfirmed_generations(rig: Rig) -> None:
    assert rig.store.newest_good("acct-a") is None
    chunks = write_inline(rig, manifest("acct-a", 1, chunk_count=1))
    write_inline(rig, manifest("acct-a", 2, chunk_count=1))
    write_inline(rig, manifest("acct-a", 3, chunk_count=1, good=False))
    write_inline(rig, manifest("acct-b", 4, chunk_count=1))
    best = rig.store.newest_good("acct-a")
    assert best is not None and best.generation == 2
    rig.store.delete_generation("acct-a", 2)
    best = rig.store.newest_good("acct-a")
    assert best is not None and (best.generation, best.head) == (1, chunks[0])


def test_newest_is_the_newest_generation_good_or_not_with_its_head(rig: Rig) -> None:
    assert rig.store.newest("acct-a") is None
    write_inline(rig, manifest("acct-a", 1, chunk_count=1))
    chunks = write_inline(rig, manifest("acct-a", 2, chunk_count=1, good=False))
    write_inline(rig, manifest("acct-b", 3, chunk_count=1))
    newest = rig.store.newest("acct-a")
    assert newest is not None and (newest.generation, newest.good, newest.head) == (2, False, chunks[0])


def test_generations_are_reserved_once_and_grow_per_account(rig: Rig) -> None:
    assert [rig.store.reserve_generation("acct-a", 0) for _ in range(3)] == [1, 2, 3]
    assert rig.store.reserve_generation("acct-b", 0) == 1
    assert rig.store.reserve_generation("acct-a", 0) == 4


def test_reserving_is_fenced_by_the_lease_epoch(rig: Rig) -> None:
    rig.set_lease_epoch("acct-a", 5)
    with pytest.raises(StaleEpochError, match="epoch 4 is older than the current 5"):
        rig.store.reserve_generation("acct-a", 4)
    assert rig.store.reserve_generation("acct-a", 5) == 1
    assert rig.store.reserve_generation("acct-a", 6) == 2


def test_commit_then_list_newest_first_and_read_chunks(rig: Rig) -> None:
    first = manifest("acct-a", 1)
    second = manifest("acct-a", 2, chunk_count=3)
    write(rig, first)
    chunks = write(rig, second)
    write(rig, manifest("acct-b", 1))
    listed = rig.store.manifests("acct-a")
    assert listed == [second, first]
    assert rig.store.manifests("acct-a", limit=1) == [second]
    assert rig.store.read_chunks("acct-a", 2, 3) == chunks
    assert rig.store.read_chunks("acct-a", 2, 4) == [*chunks, None]
    assert rig.store.manifests("acct-none") == []


def test_a_stale_commit_leaves_no_generation(rig: Rig) -> None:
    rig.set_lease_epoch("acct-a", 3)
    stale = manifest("acct-a", 1, epoch=2)
    rig.store.write_chunks("acct-a", 1, [b"one", b"two"])
    with pytest.raises(StaleEpochError):
        rig.store.commit(stale)
    assert rig.store.manifests("acct-a") == []
    assert rig.summary("acct-a") is None
    assert rig.store.orphan_generations("acct-a") == [1]


def test_a_missing_lease_counts_as_epoch_zero(rig: Rig) -> None:
    write(rig, manifest("acct-a", 1, epoch=0))
    assert [m.generation for m in rig.store.manifests("acct-a")] == [1]


def test_a_generation_is_committed_once(rig: Rig) -> None:
    write(rig, manifest("acct-a", 1))
    with pytest.raises(Exception, match="already has a manifest"):
        rig.store.commit(manifest("acct-a", 1))


def test_the_account_summary_follows_the_newest_generation(rig: Rig) -> None:
    write(rig, manifest("acct-a", 2, good=False))
    write(rig, manifest("acct-a", 1))  # older: the summary stays on 2
    summary = rig.summary("acct-a")
    assert summary is not None
    assert (summary["generation"], summary["good"], summary["size"]) == (2, False, 1002)
    assert summary["sha256"] == f"{2:064x}"
    assert rig.store.mark_good("acct-a", 2)
    assert (rig.summary("acct-a") or {})["good"] is True
    assert not rig.store.mark_good("acct-a", 9)


def test_mark_good(rig: Rig) -> None:
    write(rig, manifest("acct-a", 1, good=False))
    assert rig.store.mark_good("acct-a", 1)
    assert rig.store.manifests("acct-a")[0].good


def test_firestore_marking_a_good_generation_good_writes_nothing(clean_firestore: firestore.Client) -> None:
    """Every connect after a restore marks the restored generation good; it usually is already."""
    store = FirestoreBackupStore(clean_firestore)
    write(Rig(store, lambda a, e: None, lambda a: None), manifest("acct-a", 1, good=True))
    account = clean_firestore.collection(Collections.ACCOUNTS).document("acct-a")
    manifest_doc = account.collection(SubCollections.BACKUPS).document("1")
    before = (account.get().update_time, manifest_doc.get().update_time)
    writes = store.stats.writes
    assert store.mark_good("acct-a", 1)
    assert (account.get().update_time, manifest_doc.get().update_time) == before
    assert store.stats.writes == writes


def test_orphans_are_listed_and_deleted(rig: Rig) -> None:
    write(rig, manifest("acct-a", 1))
    rig.store.write_chunks("acct-a", 2, [b"orphan"])
    assert rig.store.orphan_generations("acct-a") == [2]
    rig.store.delete_generation("acct-a", 2)
    assert rig.store.orphan_generations("acct-a") == []
    assert rig.store.read_chunks("acct-a", 2, 1) == [None]
    assert [m.generation for m in rig.store.manifests("acct-a")] == [1]


def test_deleting_the_newest_moves_the_summary_back(rig: Rig) -> None:
    write(rig, manifest("acct-a", 1))
    write(rig, manifest("acct-a", 2))
    rig.store.delete_generation("acct-a", 2)
    assert (rig.summary("acct-a") or {})["generation"] == 1
    rig.store.delete_generation("acct-a", 1)
    assert rig.summary("acct-a") is None


def test_wipe_deletes_everything_and_is_fenced(rig: Rig) -> None:
    assert [rig.store.reserve_generation("acct-a", 0) for _ in range(3)] == [1, 2, 3]
    write(rig, manifest("acct-a", 1))
    write(rig, manifest("acct-a", 2))
    rig.store.write_chunks("acct-a", 3, [b"orphan"])
    write(rig, manifest("acct-b", 1))
    rig.set_lease_epoch("acct-a", 2)
    with pytest.raises(StaleEpochError):
        rig.store.wipe("acct-a", 1)
    assert len(rig.store.manifests("acct-a")) == 2
    assert rig.store.wipe("acct-a", 2) == 3
    assert rig.store.manifests("acct-a") == []
    assert rig.store.orphan_generations("acct-a") == []
    assert rig.summary("acct-a") is None
    assert len(rig.store.manifests("acct-b")) == 1
    assert rig.store.reserve_generation("acct-a", 2) == 4, "numbers are never reused after a wipe"


def one_chunk(generation: int, epoch: int = 1, account: str = "acct-a") -> Manifest:
    return replace(manifest(account, generation, epoch, chunk_count=1), head=b"chunk %d" % generation)


def test_commit_next_numbers_after_every_reservation_and_points_the_summary(rig: Rig) -> None:
    assert rig.store.reserve_generation("acct-a", 1) == 1  # a chunked generation's number
    asked: list[int] = []

    def build(generation: int) -> Manifest:
        asked.append(generation)
        return one_chunk(generation)

    committed = rig.store.commit_next("acct-a", 1, build)
    assert (asked, committed.manifest.generation) == ([2], 2)
    assert committed.gap, "number 1 was reserved and has no manifest: maybe orphan chunks"
    stored = rig.store.manifest("acct-a", 2)
    assert stored is not None and stored.head == b"chunk 2"
    assert rig.store.read_chunks("acct-a", 2, 1) == [b"chunk 2"]
    assert (rig.summary("acct-a") or {})["generation"] == 2
    assert (rig.store.commit_next("acct-a", 1, one_chunk).manifest.generation, committed.gap) == (3, True)
    assert not rig.store.commit_next("acct-a", 1, one_chunk).gap
    assert rig.store.reserve_generation("acct-a", 1) == 5  # a writer that dies before its manifest
    assert rig.store.commit_next("acct-a", 1, one_chunk).gap
    other = rig.store.commit_next("acct-b", 1, lambda g: one_chunk(g, account="acct-b"))
    assert (other.manifest.generation, other.gap) == (1, False)


def test_commit_next_is_fenced_and_a_refusal_uses_no_number(rig: Rig) -> None:
    rig.set_lease_epoch("acct-a", 5)
    with pytest.raises(StaleEpochError, match="epoch 4 is older than the current 5"):
        rig.store.commit_next("acct-a", 4, lambda g: one_chunk(g, epoch=4))
    assert rig.store.manifests("acct-a") == [] and rig.summary("acct-a") is None
    assert rig.store.commit_next("acct-a", 5, lambda g: one_chunk(g, epoch=5)).manifest.generation == 1


@pytest.mark.parametrize(
    ("built", "message"),
    [
        (lambda g: one_chunk(g + 1), "expected generation 1 epoch 1"),
        (lambda g: one_chunk(g, epoch=2), "expected generation 1 epoch 1"),
        (lambda g: one_chunk(g, account="acct-b"), "built a manifest for acct-b"),
        (lambda g: replace(one_chunk(g), head=None), "one-chunk manifest"),
        (lambda g: replace(one_chunk(g), chunk_count=2), "one-chunk manifest"),
    ],
)
def test_commit_next_refuses_a_manifest_it_did_not_ask_for(
    rig: Rig, built: Callable[[int], Manifest], message: str
) -> None:
    with pytest.raises(KeeperError, match=message):
        rig.store.commit_next("acct-a", 1, built)
    assert rig.store.manifests("acct-a") == [] and rig.summary("acct-a") is None
    assert rig.store.commit_next("acct-a", 1, one_chunk).manifest.generation == 1


def test_firestore_commit_next_builds_again_after_a_concurrent_write(
    clean_firestore: firestore.Client,
) -> None:
    """A status write to the account between the read and the commit: read again, build again."""
    store = FirestoreBackupStore(clean_firestore)
    account = clean_firestore.collection(Collections.ACCOUNTS).document("acct-a")
    account.set({"status": "connecting"})
    asked: list[int] = []

    def build(generation: int) -> Manifest:
        asked.append(generation)
        if len(asked) == 1:
            account.update({"status": "connected"})
        return one_chunk(generation)

    assert store.commit_next("acct-a", 1, build).manifest.generation == 1
    assert asked == [1, 1]
    data = account.get().to_dict() or {}
    assert (data["status"], data["backup"]["generation"], data["backup_reserved_generation"]) == (
        "connected",
        1,
        1,
    )
    assert [m.generation for m in store.manifests("acct-a")] == [1]


def many(*accounts: str, epoch: int = 1) -> list[tuple[str, int, Callable[[int], Manifest]]]:
    return [(a, epoch, lambda g, a=a: one_chunk(g, epoch=epoch, account=a)) for a in accounts]  # type: ignore[misc]


def test_commit_next_many_commits_each_account_as_commit_next_would(rig: Rig) -> None:
    rig.store.commit_next("acct-b", 1, lambda g: one_chunk(g, account="acct-b"))
    assert rig.store.reserve_generation("acct-c", 1) == 1  # a chunked writer that died
    results = rig.store.commit_next_many(many("acct-a", "acct-b", "acct-c"))
    assert [(r.manifest.generation, r.gap) for r in results if not isinstance(r, Exception)] == [
        (1, False),
        (2, False),
        (2, True),
    ]
    for account, generation in (("acct-a", 1), ("acct-b", 2), ("acct-c", 2)):
        stored = rig.store.manifest(account, generation)
        assert stored is not None and stored.head == b"chunk %d" % generation
        assert (rig.summary(account) or {})["generation"] == generation
    assert rig.store.commit_next_many([]) == []


def test_commit_next_many_refuses_a_stale_account_alone(rig: Rig) -> None:
    rig.set_lease_epoch("acct-b", 5)
    bad = ("acct-c", 1, lambda g: one_chunk(g + 1, account="acct-c"))
    results = rig.store.commit_next_many([*many("acct-a", "acct-b"), bad, *many("acct-d")])
    assert [type(r).__name__ for r in results] == [
        "NextCommit",
        "StaleEpochError",
        "KeeperError",
        "NextCommit",
    ]
    assert rig.store.manifests("acct-b") == [] and rig.store.manifests("acct-c") == []
    assert [m.generation for m in rig.store.manifests("acct-d")] == [1]
    with pytest.raises(KeeperError, match="twice"):
        rig.store.commit_next_many(many("acct-a", "acct-a"))


def _writing_builder(
    asked: dict[str, list[int]], write: Callable[[str, int], None], epoch: int = 1
) -> Callable[[str], Callable[[int], Manifest]]:
    """Builders that record each call and run `write(account, call number)` first."""

    def builder(account: str) -> Callable[[int], Manifest]:
        def build(generation: int) -> Manifest:
            asked[account].append(generation)
            write(account, len(asked[account]))
            return one_chunk(generation, epoch=epoch, account=account)

        return build

    return builder


def test_firestore_commit_next_many_reads_afresh_once_after_a_concurrent_write(
    clean_firestore: firestore.Client,
) -> None:
    """Accounts read together, one of them written between the read and the commit: the
    batch fails whole, is read afresh once and goes whole again."""
    store = FirestoreBackupStore(clean_firestore)
    accounts = [f"acct-{i}" for i in range(8)]
    asked: dict[str, list[int]] = {a: [] for a in accounts}

    def write(account: str, call: int) -> None:
        if account == "acct-5" and call == 1:
            clean_firestore.collection(Collections.ACCOUNTS).document(account).set({"status": "x"})

    builder = _writing_builder(asked, write)
    reads, writes = store.stats.reads, store.stats.writes
    results = store.commit_next_many([(a, 1, builder(a)) for a in accounts])
    assert all(not isinstance(r, Exception) and r.manifest.generation == 1 for r in results)
    assert all(asked[a] == [1, 1] for a in accounts), "each built again on the fresh read"
    assert store.stats.reads - reads == 2 * 2 * len(accounts), "all read twice"
    assert store.commits == 2, "all, then all again"
    assert store.stats.writes - writes == 3 * len(accounts), "each generation's writes counted once"
    for account in accounts:
        assert [m.generation for m in store.manifests(account)] == [1]
    assert (clean_firestore.collection(Collections.ACCOUNTS).document("acct-5").get().to_dict() or {})[
        "status"
    ] == "x", "the concurrent write kept"


def test_firestore_commit_next_many_reads_afresh_once_after_the_leases_were_renewed(
    clean_firestore: firestore.Client,
) -> None:
    """Our own renewals change many leases at once (they were taken together): every lease of
    the batch renewed between the read and the commit costs one fresh read, not a split."""
    store = FirestoreBackupStore(clean_firestore)
    accounts = [f"acct-{i}" for i in range(8)]
    leases = clean_firestore.collection(Collections.LEASES)
    for account in accounts:
        leases.document(account).set({"epoch": 3, "holder": "conn-a", "renewals": 0})
    asked: dict[str, list[int]] = {a: [] for a in accounts}

    def renew_all(account: str, call: int) -> None:
        if account == "acct-0" and call == 1:
            for other in accounts:
                leases.document(other).update({"renewals": 1})

    builder = _writing_builder(asked, renew_all, epoch=3)
    results = store.commit_next_many([(a, 3, builder(a)) for a in accounts])
    assert all(not isinstance(r, Exception) and r.manifest.generation == 1 for r in results)
    assert store.commits == 2, "all, then all again on the renewed leases"
    assert all(asked[a] == [1, 1] for a in accounts)


def test_firestore_commit_next_many_splits_when_the_fresh_read_fails_too(
    clean_firestore: firestore.Client,
) -> None:
    """One account written again between the fresh read and the second commit: the batch is
    split in halves, and that account alone reads afresh."""
    store = FirestoreBackupStore(clean_firestore)
    accounts = [f"acct-{i}" for i in range(8)]
    asked: dict[str, list[int]] = {a: [] for a in accounts}

    def write(account: str, call: int) -> None:
        if account == "acct-5" and call <= 2:
            clean_firestore.collection(Collections.ACCOUNTS).document(account).set({"status": f"x{call}"})

    builder = _writing_builder(asked, write)
    reads = store.stats.reads
    results = store.commit_next_many([(a, 1, builder(a)) for a in accounts])
    assert all(not isinstance(r, Exception) and r.manifest.generation == 1 for r in results)
    assert asked["acct-5"] == [1, 1, 1] and all(asked[a] == [1, 1] for a in accounts if a != "acct-5")
    assert store.stats.reads - reads == 2 * 2 * len(accounts) + 2, "all twice, then acct-5 alone"
    assert store.commits == 1 + 1 + 2 + 2 + 2, "all, all again, then halves down to acct-5"
    for account in accounts:
        assert [m.generation for m in store.manifests(account)] == [1]
    assert store.commit_next_many([(a, 1, builder(a)) for a in accounts]) and store.commits == 9


def test_full_size_chunks_round_trip(rig: Rig) -> None:
    """12 chunks of 900 KiB: more than one Firestore request's worth (10 MiB)."""
    chunks = [os.urandom(MAX_CHUNK_BYTES) for _ in range(12)]
    m = manifest("acct-a", 1, chunk_count=12)
    write(rig, m, chunks)
    assert rig.store.read_chunks("acct-a", 1, 12) == chunks


def test_firestore_manifest_fields_follow_the_contract(clean_firestore: firestore.Client) -> None:
    store = FirestoreBackupStore(clean_firestore)
    m = manifest("acct-a", 1)
    write(Rig(store, lambda a, e: None, lambda a: None), m)
    doc = clean_firestore.document(f"{Collections.ACCOUNTS}/acct-a/{SubCollections.BACKUPS}/1").get()
    assert set((doc.to_dict() or {}).keys()) == {
        "generation", "created_at", "connector_id", "lease_epoch", "format", "key_id", "wrapped_key",
        "size", "sha256", "chunk_count", "taken_while_connected", "good", "jid",
    }  # fmt: skip
    chunk = clean_firestore.document(
        f"{Collections.ACCOUNTS}/acct-a/{SubCollections.BACKUPS}/1/{SubCollections.CHUNKS}/0"
    ).get()
    assert isinstance((chunk.to_dict() or {})["data"], bytes)


@pytest.mark.parametrize(
    "damage",
    [{"generation": "1"}, {"chunk_count": 0}, {"wrapped_key": "text"}, {"good": None}, {"generation": 2}],
    ids=["generation as text", "no chunks", "key as text", "good missing", "id mismatch"],
)
def test_firestore_skips_a_malformed_manifest(
    clean_firestore: firestore.Client, damage: dict[str, Any]
) -> None:
    store = FirestoreBackupStore(clean_firestore)
    rig = Rig(store, lambda a, e: None, lambda a: None)
    write(rig, manifest("acct-a", 1))
    bad = {**manifest_fields(replace(manifest("acct-a", 1), generation=1)), **damage}
    clean_firestore.document(f"{Collections.ACCOUNTS}/acct-a/{SubCollections.BACKUPS}/1").set(bad)
    write(rig, manifest("acct-a", 3))
    assert [m.generation for m in store.manifests("acct-a")] == [3]


def test_firestore_refuses_a_lease_with_a_bad_epoch(clean_firestore: firestore.Client) -> None:
    clean_firestore.document(f"{Collections.LEASES}/acct-a").set({"epoch": "7", "holder": "x"})
    store = FirestoreBackupStore(clean_firestore)
    with pytest.raises(
        KeeperError, match=r"leases/acct-a: field epoch is .7., expected a non-negative integer"
    ):
        store.reserve_generation("acct-a", 7)
    assert store.manifests("acct-a") == [] and store.orphan_generations("acct-a") == []


def test_newest_many_reads_the_newest_of_each_account_by_its_summary(rig: Rig) -> None:
    write_inline(rig, manifest("acct-a", 1, chunk_count=1))
    chunks = write_inline(rig, manifest("acct-a", 2, chunk_count=1, good=False))
    b = write_inline(rig, manifest("acct-b", 1, chunk_count=2))
    found = rig.store.newest_many(["acct-a", "acct-b", "acct-c"])
    assert sorted(found) == ["acct-a", "acct-b"]  # acct-c has no backup: left to `newest`
    assert (found["acct-a"].generation, found["acct-a"].good, found["acct-a"].head) == (2, False, chunks[0])
    assert (found["acct-b"].generation, found["acct-b"].head) == (1, b[0])
    assert found["acct-a"] == rig.store.newest("acct-a")
    assert rig.store.newest_many([]) == {}


def test_newest_many_follows_a_newer_generation_and_a_deleted_one(rig: Rig) -> None:
    write_inline(rig, manifest("acct-a", 1, chunk_count=1))
    write_inline(rig, manifest("acct-a", 2, chunk_count=1))
    assert rig.store.newest_many(["acct-a"])["acct-a"].generation == 2
    rig.store.delete_generation("acct-a", 2)
    assert rig.store.newest_many(["acct-a"])["acct-a"].generation == 1


def test_manifests_named_reads_the_named_generation_of_each_account_with_its_head(rig: Rig) -> None:
    a1 = write_inline(rig, manifest("acct-a", 1, chunk_count=1))
    write_inline(rig, manifest("acct-a", 2, chunk_count=1))
    b = write_inline(rig, manifest("acct-b", 1, chunk_count=2))
    found = rig.store.manifests_named({"acct-a": 1, "acct-b": 1, "acct-c": 1, "acct-d": 0})
    assert sorted(found) == ["acct-a", "acct-b"]  # none of acct-c; no generation 0
    assert (found["acct-a"].generation, found["acct-a"].head) == (1, a1[0])  # the one named, not the newest
    assert (found["acct-b"].generation, found["acct-b"].head) == (1, b[0])
    assert found["acct-a"] == rig.store.manifest("acct-a", 1)
    assert rig.store.manifests_named({"acct-a": 3}) == {} and rig.store.manifests_named({}) == {}


def test_firestore_newest_many_leaves_out_a_summary_naming_no_readable_manifest(
    clean_firestore: firestore.Client,
) -> None:
    """A delete halfway (manifest gone, summary not yet moved back), a hand-edited summary,
    a malformed manifest: the caller asks `newest` for those accounts."""
    store = FirestoreBackupStore(clean_firestore)
    rig = Rig(store, lambda a, e: None, lambda a: None)
    for account in ("gone", "text", "bad", "fine"):
        write_inline(rig, manifest(account, 1, chunk_count=1))
    accounts = clean_firestore.collection(Collections.ACCOUNTS)
    clean_firestore.document(f"{Collections.ACCOUNTS}/gone/{SubCollections.BACKUPS}/1").delete()
    accounts.document("text").update({"backup.generation": "1"})
    clean_firestore.document(f"{Collections.ACCOUNTS}/bad/{SubCollections.BACKUPS}/1").update(
        {"chunk_count": 0}
    )
    assert sorted(store.newest_many(["gone", "text", "bad", "fine"])) == ["fine"]
