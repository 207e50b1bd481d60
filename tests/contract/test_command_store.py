"""The command store: the same cases against the in-memory fake and Firestore."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from connector.adapters.firestore_commands import FirestoreCommandStore
from connector.adapters.memory_commands import MemoryCommandStore
from connector.clock import SystemClock
from connector.inbox import ClaimRefused
from connector.ports import CommandStore, PendingCommand
from wa_wire import Collections, Command, CommandAction, command_id_for, encode
from wa_wire.codec import utc_timestamp


@dataclass
class Rig:
    store: CommandStore
    add: Callable[[str, dict[str, Any]], None]
    set_lease_epoch: Callable[[str, int], None]
    read: Callable[[str], dict[str, Any]]


@pytest.fixture(params=["memory", "firestore"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    clock = SystemClock()
    if request.param == "memory":
        fake = MemoryCommandStore(clock)
        yield Rig(fake, fake.add, fake.lease_epochs.__setitem__, lambda cid: dict(fake.docs[cid]))
        return
    client: firestore.Client = request.getfixturevalue("clean_firestore")
    real = FirestoreCommandStore(client, clock)

    def add(cid: str, data: dict[str, Any]) -> None:
        client.collection(Collections.COMMANDS).document(cid).set(data)

    def set_epoch(account: str, epoch: int) -> None:
        client.collection(Collections.LEASES).document(account).set({"epoch": epoch})

    def read(cid: str) -> dict[str, Any]:
        return client.collection(Collections.COMMANDS).document(cid).get().to_dict() or {}

    yield Rig(real, add, set_epoch, read)
    real.stop_listening()


def command(
    account: str, action: CommandAction, expires_in_s: float = 600, **params: Any
) -> tuple[str, dict[str, Any]]:
    now = datetime.now(UTC)
    source = f"test-{account}-{action.value}-{expires_in_s}"
    cmd = Command(
        account_id=account,
        action=action,
        params=params,
        reason="test",
        issued_by="cli:test",
        source_event_id=source,
        issued_at=utc_timestamp(now - timedelta(seconds=1200)),
        expires_at=utc_timestamp(now + timedelta(seconds=expires_in_s)),
    )
    return command_id_for(source, action), encode(cmd)


def test_pending_lists_only_pending_commands_of_the_given_accounts(rig: Rig) -> None:
    cid, data = command("acct-1", CommandAction.RESTORE, generation=4)
    other, other_data = command("acct-2", CommandAction.WIPE)
    rig.add(cid, data)
    rig.add(other, other_data)
    rig.add("garbage", {"account_id": "acct-1", "action": "format_disk"})
    found = rig.store.pending(["acct-1"])
    assert [(p.command_id, p.action, p.generation) for p in found] == [(cid, CommandAction.RESTORE, 4)]


def test_claim_then_finish(rig: Rig) -> None:
    cid, data = command("acct-1", CommandAction.RECONNECT)
    rig.add(cid, data)
    rig.set_lease_epoch("acct-1", 3)
    rig.store.claim(cid, "conn-a", 3)
    doc = rig.read(cid)
    assert (doc["status"], doc["claimed_by"], doc["claimed_epoch"]) == ("claimed", "conn-a", 3)
    with pytest.raises(ClaimRefused, match="not pending"):
        rig.store.claim(cid, "conn-b", 3)
    rig.store.finish(cid, "conn-a", True, "reconnect started")
    doc = rig.read(cid)
    assert doc["status"] == "done"
    assert doc["result"] == {"ok": True, "message": "reconnect started"}
    assert doc["action"] == "reconnect"  # nothing rewrites action or params


def test_a_repeated_claim_by_the_claimer_succeeds(rig: Rig) -> None:
    """A retry of a claim whose commit landed but whose answer was lost must not lose the command."""
    cid, data = command("acct-1", CommandAction.RESTORE, generation=2)
    rig.add(cid, data)
    rig.set_lease_epoch("acct-1", 3)
    rig.store.claim(cid, "conn-a", 3)
    rig.store.claim(cid, "conn-a", 3)
    rig.set_lease_epoch("acct-1", 4)
    with pytest.raises(ClaimRefused, match="not pending"):
        rig.store.claim(cid, "conn-a", 4)
    assert rig.read(cid)["claimed_epoch"] == 3


def test_claim_with_a_stale_epoch_is_refused(rig: Rig) -> None:
    cid, data = command("acct-1", CommandAction.WIPE)
    rig.add(cid, data)
    rig.set_lease_epoch("acct-1", 5)
    with pytest.raises(ClaimRefused, match="epoch 4 is not the lease's 5"):
        rig.store.claim(cid, "conn-old", 4)
    assert rig.read(cid)["status"] == "pending"


def test_an_expired_command_is_marked_expired_not_run(rig: Rig) -> None:
    cid, data = command("acct-1", CommandAction.WIPE, expires_in_s=-1)
    rig.add(cid, data)
    with pytest.raises(ClaimRefused, match="expired"):
        rig.store.claim(cid, "conn-a", 0)
    assert rig.read(cid)["status"] == "expired"


def test_only_the_claimer_finishes(rig: Rig) -> None:
    cid, data = command("acct-1", CommandAction.PAIR)
    rig.add(cid, data)
    rig.store.claim(cid, "conn-a", 0)
    with pytest.raises(ClaimRefused):
        rig.store.finish(cid, "conn-b", False, "not mine")


def test_the_listener_hears_new_pending_commands(rig: Rig) -> None:
    heard: list[PendingCommand] = []
    got = threading.Event()

    def on_pending(p: PendingCommand) -> None:
        heard.append(p)
        got.set()

    rig.store.listen(on_pending)
    cid, data = command("acct-9", CommandAction.LOGOUT)
    rig.add(cid, data)
    assert got.wait(20), "the listener did not report the new command"
    assert heard[-1].command_id == cid
    assert rig.store.listening()
    rig.store.stop_listening()
