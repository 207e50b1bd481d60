"""The handoff hints contract: the same cases against the in-memory board and the emulator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from google.cloud import firestore

from connector.adapters.firestore_hints import FirestoreHandoffHints, hinted_accounts
from connector.adapters.memory_hints import HintBoard, MemoryHandoffHints
from connector.lease_record import LeaseError
from connector.ports import HandoffHints
from tests.integration.failover_support import Check
from tests.integration.stack_support import wait_until
from wa_wire import Collections


@dataclass
class Rig:
    make: Callable[[], HandoffHints]  # one per connector
    raw: Callable[[str], list[str] | None]  # what a hint document holds now


def memory_rig() -> Rig:
    board = HintBoard()
    return Rig(make=lambda: MemoryHandoffHints(board), raw=board.docs.get)


def firestore_rig(client: firestore.Client) -> Rig:
    def raw(connector: str) -> list[str] | None:
        snap = client.collection(Collections.HANDOFFS).document(connector).get()
        return list((snap.to_dict() or {}).get("accounts", [])) if snap.exists else None

    return Rig(make=lambda: FirestoreHandoffHints(client), raw=raw)


@pytest.fixture(params=["memory", "firestore"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        yield memory_rig()
    else:
        yield firestore_rig(request.getfixturevalue("clean_firestore"))


class Heard:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accounts: list[str] = []

    def __call__(self, accounts: list[str]) -> None:
        with self.lock:
            self.accounts.extend(accounts)

    def all(self) -> set[str]:
        with self.lock:
            return set(self.accounts)


def hearing(heard: Heard, hints: HandoffHints, want: set[str]) -> Check:
    """Whether `want` was heard; if not, what was, and whether the listener still runs."""
    got = heard.all()
    return Check(got == want, f"heard {sorted(got)}, listening: {hints.listening()}")


def test_hints_reach_each_target_and_are_cleared_once_heard(rig: Rig) -> None:
    sender, b, c = rig.make(), rig.make(), rig.make()
    heard_b, heard_c = Heard(), Heard()
    assert not b.listening()
    b.listen("conn-b", heard_b)
    c.listen("conn-c", heard_c)
    wait_until("both listening", lambda: b.listening() and c.listening(), 30)
    try:
        sender.send(["conn-b", "conn-c"], ["acct-1", "acct-2"])
        sender.send(["conn-b"], ["acct-3"])
        wait_until("conn-b hearing three", lambda: hearing(heard_b, b, {"acct-1", "acct-2", "acct-3"}), 30)
        wait_until("conn-c hearing two", lambda: hearing(heard_c, c, {"acct-1", "acct-2"}), 30)
        wait_until("conn-b's hints cleared", lambda: rig.raw("conn-b") == [], 30)
    finally:
        b.stop()
        c.stop()
    assert not b.listening()


def test_hints_sent_before_the_target_listens_reach_it_when_it_does(rig: Rig) -> None:
    rig.make().send(["conn-b"], ["acct-1"])
    late, heard = rig.make(), Heard()
    late.listen("conn-b", heard)
    try:
        wait_until("the waiting hint heard", lambda: heard.all() == {"acct-1"}, 30)
    finally:
        late.stop()


def test_nothing_to_send_writes_nothing(rig: Rig) -> None:
    hints = rig.make()
    hints.send([], ["acct-1"])
    hints.send(["conn-b"], [])
    assert rig.raw("conn-b") in (None, [])


def test_a_bad_account_or_connector_id_is_refused(rig: Rig) -> None:
    hints = rig.make()
    with pytest.raises(LeaseError):
        hints.send(["conn-b"], ["bad/id"])
    with pytest.raises(LeaseError):
        hints.send(["bad/id"], ["acct-1"])
    assert rig.raw("conn-b") is None


@pytest.mark.parametrize(
    ("data", "expected", "logged"),
    [
        (None, [], False),
        ({}, [], False),
        ({"accounts": "acct-1"}, [], True),
        ({"accounts": ["acct-2", "acct-1", "acct-2"]}, ["acct-1", "acct-2"], False),
        ({"accounts": ["acct-1", 7, "bad/id", ""]}, ["acct-1"], True),
    ],
)
def test_a_malformed_hint_document_is_logged_and_its_valid_ids_kept(
    data: dict[str, object] | None, expected: list[str], logged: bool, caplog: pytest.LogCaptureFixture
) -> None:
    assert hinted_accounts("conn-b", data) == expected
    assert ("handoffs/conn-b" in caplog.text) is logged
