"""The account status writer: the same cases against the in-memory fake and Firestore."""

from __future__ import annotations

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


@pytest.fixture(params=["memory", "firestore", "firestore-known-leases"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        fake = MemoryStatusWriter()
        yield Rig(
            write=fake.write_sync,
            set_lease_epoch=fake.lease_epochs.__setitem__,
            read=lambda account: dict(fake.docs.get(account, {})),
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

    yield Rig(write=real.write_sync, set_lease_epoch=set_epoch, read=read)


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
