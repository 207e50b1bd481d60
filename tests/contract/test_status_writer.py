"""The account status writer: the same cases against the in-memory fake and Firestore."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from connector.adapters.firestore_cas import LeaseVersions
from connector.adapters.firestore_status import FirestoreStatusWriter
from connector.adapters.memory_status import MemoryStatusWriter
from connector.lease_record import LeaseRecord
from connector.ports import StaleEpochError, StatusUpdate
from wa_wire import AccountStatus, Collections


@dataclass
class Rig:
    write: Callable[[str, StatusUpdate], None]
    set_lease_epoch: Callable[[str, int], None]
    read: Callable[[str], dict[str, Any]]
    write_many: Callable[[list[tuple[str, StatusUpdate]]], list[Exception | None]]
    change_lease_behind: Callable[[str], None]  # another writer touches the lease, same epoch


@pytest.fixture(params=["memory", "firestore", "firestore-known-leases"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        fake = MemoryStatusWriter()
        yield Rig(
            write=fake.write_sync,
            set_lease_epoch=fake.lease_epochs.__setitem__,
            read=lambda account: dict(fake.docs.get(account, {})),
            write_many=fake.write_many_sync,
            change_lease_behind=lambda account: None,
        )
        return
    client: firestore.Client = request.getfixturevalue("clean_firestore")
    versions = LeaseVersions() if request.param == "firestore-known-leases" else None
    real = FirestoreStatusWriter(client, versions)

    def set_epoch(account: str, epoch: int) -> None:
        ref = client.collection(Collections.LEASES).document(account)
        now = datetime.now(UTC)
        ref.set(LeaseRecord(account, "conn-a", epoch, 15_000, now, now, 0).to_fields())
        if versions is not None:  # as the lease store would remember its own write
            versions.put_snapshot(account, ref.get())

    def read(account: str) -> dict[str, Any]:
        return client.collection(Collections.ACCOUNTS).document(account).get().to_dict() or {}

    def change_lease_behind(account: str) -> None:  # a renewal this writer has not seen
        ref = client.collection(Collections.LEASES).document(account)
        ref.update({"renewed_at": datetime.now(UTC)})

    yield Rig(
        write=real.write_sync,
        set_lease_epoch=set_epoch,
        read=read,
        write_many=real.write_many_sync,
        change_lease_behind=change_lease_behind,
    )


def update(status: AccountStatus, epoch: int = 1, **kw: Any) -> StatusUpdate:
    base: dict[str, Any] = {"reason": status.value, "epoch": epoch, "holder": "conn-a", "jid": None}
    base.update(kw)
    return StatusUpdate(status=status, **base)


def test_writes_status_holder_and_epoch(rig: Rig) -> None:
    rig.write("acct", update(AccountStatus.CONNECTING, jid="1555:1@s.whatsapp.net"))
    doc = rig.read("acct")
    assert doc["status"] == "connecting"
    assert doc["holder"] == "conn-a"
    assert doc["lease_epoch"] == 1
    assert doc["jid"] == "1555:1@s.whatsapp.net"
    assert "qr" not in doc


def test_qr_only_while_pairing(rig: Rig) -> None:
    rig.write("acct", update(AccountStatus.PAIRING, qr=("2@code", "2026-11-26T01:00:00.000000Z")))
    assert rig.read("acct")["qr"] == {"code": "2@code", "expires_at": "2026-11-26T01:00:00.000000Z"}
    rig.write("acct", update(AccountStatus.CONNECTING))
    assert "qr" not in rig.read("acct")


def test_connected_records_the_time(rig: Rig) -> None:
    moment = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)
    rig.write("acct", update(AccountStatus.CONNECTED, connected_at=moment))
    assert rig.read("acct")["last_connected_at"] == moment


def test_a_stale_epoch_is_refused_and_changes_nothing(rig: Rig) -> None:
    rig.set_lease_epoch("acct", 4)
    rig.write("acct", update(AccountStatus.CONNECTED, epoch=4))
    with pytest.raises(StaleEpochError, match="epoch 3 is older than the lease's 4"):
        rig.write("acct", update(AccountStatus.RECONNECTING, epoch=3, holder="conn-old"))
    doc = rig.read("acct")
    assert doc["status"] == "connected"
    assert doc["holder"] == "conn-a"


def test_a_newer_epoch_is_accepted(rig: Rig) -> None:
    rig.set_lease_epoch("acct", 2)
    rig.write("acct", update(AccountStatus.CONNECTED, epoch=3))
    assert rig.read("acct")["lease_epoch"] == 3


def test_many_statuses_are_written_each_with_its_own_lease_check(rig: Rig) -> None:
    for account, epoch in (("a", 2), ("b", 5), ("c", 2), ("d", 2)):
        rig.set_lease_epoch(account, epoch)
    rig.change_lease_behind("c")  # the batch meets a changed lease: c goes alone, all are written
    results = rig.write_many(
        [
            ("a", update(AccountStatus.CONNECTED, epoch=2)),
            ("b", update(AccountStatus.CONNECTED, epoch=4)),  # stale: the lease moved on to 5
            ("c", update(AccountStatus.CONNECTED, epoch=2)),
            ("d", update(AccountStatus.RECONNECTING, epoch=3)),  # ahead of the lease: allowed
        ]
    )
    assert [type(r).__name__ if r else None for r in results] == [None, "StaleEpochError", None, None]
    assert [rig.read(x).get("status") for x in "abcd"] == ["connected", None, "connected", "reconnecting"]
    with pytest.raises(ValueError, match="twice"):
        rig.write_many([("a", update(AccountStatus.CONNECTED, epoch=2))] * 2)


async def test_firestore_statuses_queued_together_go_out_in_one_commit(
    clean_firestore: firestore.Client,
) -> None:
    versions = LeaseVersions()
    writer = FirestoreStatusWriter(clean_firestore, versions)
    for account in ("a", "b", "c", "d"):
        ref = clean_firestore.collection(Collections.LEASES).document(account)
        now = datetime.now(UTC)
        ref.set(LeaseRecord(account, "conn-a", 1, 15_000, now, now, 0).to_fields())
        versions.put_snapshot(account, ref.get())
    await asyncio.gather(
        *(writer.write(x, update(AccountStatus.CONNECTED)) for x in "abc"),
        writer.write("a", update(AccountStatus.RECONNECTING, reason="later")),  # after a's first
    )
    assert writer.commits == 2  # a, b, c together; then a's second status, in a commit of its own
    docs = {
        x: clean_firestore.collection(Collections.ACCOUNTS).document(x).get().to_dict() or {} for x in "abc"
    }
    assert [docs[x]["status"] for x in "abc"] == ["reconnecting", "connected", "connected"]
    with pytest.raises(StaleEpochError):
        await writer.write("d", update(AccountStatus.CONNECTED, epoch=0))
