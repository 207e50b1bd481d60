"""The handoff hints contract: the same cases against the in-memory board and the emulator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from connector.adapters.firestore_hints import FirestoreHandoffHints, Unheard, hinted_accounts
from connector.adapters.memory_hints import HintBoard, MemoryHandoffHints
from connector.lease_record import LeaseError, LeaseRecord, LeaseView
from connector.ports import CleanRelease, HandoffHints, NewestBackup
from tests.integration.failover_support import Check
from tests.integration.stack_support import wait_until
from wa_wire import Collections

Held = tuple[list[object], list[object]]  # a hint document's accounts and clean entries


@dataclass
class Rig:
    make: Callable[[], HandoffHints]  # one per connector
    raw: Callable[[str], Held | None]  # what a hint document holds now (None: no document)


def memory_rig() -> Rig:
    board = HintBoard()

    def raw(connector: str) -> Held | None:
        if connector not in board.docs:
            return None
        clean = board.clean.get(connector, {})
        return list(board.docs[connector]), [
            {"account": a, "version": c.lease.version} for a, c in clean.items()
        ]

    return Rig(make=lambda: MemoryHandoffHints(board), raw=raw)


def firestore_rig(client: firestore.Client) -> Rig:
    def raw(connector: str) -> Held | None:
        snap = client.collection(Collections.HANDOFFS).document(connector).get()
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        return list(data.get("accounts", [])), list(data.get("clean", []))

    return Rig(make=lambda: FirestoreHandoffHints(client), raw=raw)


@pytest.fixture(params=["memory", "firestore"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        yield memory_rig()
    else:
        yield firestore_rig(request.getfixturevalue("clean_firestore"))


AT = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)


def released(account: str, epoch: int, version: str = "2026-11-26T10:00:00.123456789Z") -> LeaseView:
    """A lease as its holder's clean release left it (holder None, epoch kept)."""
    record = LeaseRecord(account, None, epoch, 15_000, AT, AT - timedelta(minutes=5), epoch - 1)
    return LeaseView(account, record, AT, written=True, version=version)


def clean(account: str, epoch: int, newest: NewestBackup | None = None) -> CleanRelease:
    return CleanRelease(released(account, epoch), newest)


def epochs(hinted: Mapping[str, CleanRelease | None]) -> dict[str, int | None]:
    return {a: None if c is None else c.lease.epoch() for a, c in hinted.items()}


class Heard:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hints: list[dict[str, CleanRelease | None]] = []

    def __call__(self, hinted: dict[str, CleanRelease | None]) -> None:
        with self.lock:
            self.hints.append(dict(hinted))

    def views(self) -> dict[str, CleanRelease | None]:
        with self.lock:
            merged: dict[str, CleanRelease | None] = {}
            for hint in self.hints:
                merged.update(hint)
            return merged

    def all(self) -> dict[str, int | None]:
        return epochs(self.views())


def hearing(heard: Heard, hints: HandoffHints, want: dict[str, int | None]) -> Check:
    """Whether `want` was heard; if not, what was, and whether the listener still runs."""
    got = heard.all()
    return Check(got == want, f"heard {got}, listening: {hints.listening()}")


def test_hints_reach_each_target_and_are_cleared_once_heard(rig: Rig) -> None:
    sender, b, c = rig.make(), rig.make(), rig.make()
    heard_b, heard_c = Heard(), Heard()
    assert not b.listening()
    b.listen("conn-b", heard_b)
    c.listen("conn-c", heard_c)
    wait_until("both listening", lambda: b.listening() and c.listening(), 30)
    try:
        sender.send(["conn-b", "conn-c"], {"acct-1": None, "acct-2": clean("acct-2", 4, NewestBackup(9, 3))})
        sender.send(["conn-b"], {"acct-3": None})
        three = {"acct-1": None, "acct-2": 4, "acct-3": None}
        wait_until("conn-b hearing three", lambda: hearing(heard_b, b, three), 30)
        wait_until("conn-c hearing two", lambda: hearing(heard_c, c, {"acct-1": None, "acct-2": 4}), 30)
        wait_until("conn-b's hints cleared", lambda: rig.raw("conn-b") == ([], []), 30)
        # the lease as released comes over whole: the receiver acquires on it without a read;
        # and the releaser's newest backup: the receiver reads less ahead, often nothing
        lease = replace(released("acct-2", 4), server_now=None, written=False)
        assert heard_c.views()["acct-2"] == CleanRelease(lease, NewestBackup(9, 3))
    finally:
        b.stop()
        c.stop()
    assert not b.listening()


def test_hints_sent_before_the_target_listens_reach_it_when_it_does(rig: Rig) -> None:
    sender = rig.make()
    sender.send(["conn-b"], {"acct-1": None, "acct-2": None})
    sender.send(["conn-b"], {"acct-2": clean("acct-2", 7)})
    late, heard = rig.make(), Heard()
    late.listen("conn-b", heard)
    try:  # both waiting hints of acct-2 arrive as one: its released lease wins over the bare id
        wait_until("the waiting hints heard", lambda: heard.all() == {"acct-1": None, "acct-2": 7}, 30)
    finally:
        late.stop()


def test_nothing_to_send_writes_nothing(rig: Rig) -> None:
    hints = rig.make()
    hints.send([], {"acct-1": None})
    hints.send(["conn-b"], {})
    assert rig.raw("conn-b") is None


def test_a_bad_account_or_connector_id_is_refused(rig: Rig) -> None:
    hints = rig.make()
    with pytest.raises(LeaseError):
        hints.send(["conn-b"], {"bad/id": None})
    with pytest.raises(LeaseError):
        hints.send(["bad/id"], {"acct-1": clean("acct-1", 3)})
    assert rig.raw("conn-b") is None


def entry(account: str, epoch: int, holder: str | None = None) -> dict[str, object]:
    """A `clean` entry as a sender writes it."""
    view = released(account, epoch)
    assert view.record is not None
    return {
        "account": account,
        "lease": {**view.record.to_fields(), "holder": holder},
        "version": view.version,
    }


@pytest.mark.parametrize(
    ("data", "expected", "logged"),
    [
        (None, {}, False),
        ({}, {}, False),
        ({"accounts": "acct-1"}, {}, True),
        ({"accounts": ["acct-2", "acct-1", "acct-2"]}, {"acct-1": None, "acct-2": None}, False),
        ({"accounts": ["acct-1", 7, "bad/id", ""]}, {"acct-1": None}, True),
        ({"accounts": ["acct-1"], "clean": [entry("acct-1", 3)]}, {"acct-1": 3}, False),
        ({"clean": [entry("acct-1", 3), entry("acct-1", 2)]}, {"acct-1": 3}, False),
        ({"clean": entry("acct-1", 3)}, {}, True),
        ({"clean": ["acct-1", {**entry("acct-1", 3), "account": "bad/id"}]}, {}, True),
        ({"clean": [entry("acct-1", 3, holder="conn-a"), entry("acct-2", 0)]}, {}, True),
        ({"clean": [{**entry("acct-1", 3), "version": 5}, {**entry("acct-2", 3), "lease": "x"}]}, {}, True),
        ({"clean": [{**entry("acct-1", 3), "lease": {"epoch": 3}}]}, {}, True),
    ],
)
def test_a_malformed_hint_document_is_logged_and_its_valid_hints_kept(
    data: dict[str, object] | None,
    expected: dict[str, int | None],
    logged: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert epochs(hinted_accounts("conn-b", data)) == expected
    assert ("handoffs/conn-b" in caplog.text) is logged


@pytest.mark.parametrize(
    ("backup", "expected"),
    [
        (None, None),
        ({"generation": 5, "lease_epoch": 3}, NewestBackup(5, 3)),
        ({"generation": 0, "lease_epoch": 0}, NewestBackup(0, 0)),  # it had none
        ("5", None),
        ({"generation": "5", "lease_epoch": 3}, None),
        ({"generation": 5, "lease_epoch": True}, None),
        ({"generation": -1, "lease_epoch": 3}, None),
        ({"generation": 5}, None),
        ({"generation": 5, "lease_epoch": 0}, None),
        ({"generation": 5, "lease_epoch": 4}, None),  # written after the release at epoch 3: cannot be
    ],
)
def test_the_newest_backup_of_a_clean_release_is_kept_only_when_well_formed(
    backup: object, expected: NewestBackup | None, caplog: pytest.LogCaptureFixture
) -> None:
    fields = entry("acct-1", 3) | ({} if backup is None else {"backup": backup})
    hinted = hinted_accounts("conn-b", {"clean": [fields]})
    assert epochs(hinted) == {"acct-1": 3}  # the clean release stands either way
    release = hinted["acct-1"]
    assert release is not None and release.newest == expected
    assert ("ignored the newest backup" in caplog.text) is (backup is not None and expected is None)


def test_malformed_entries_are_cleared_with_the_valid_ones(clean_firestore: firestore.Client) -> None:
    """Written by hand (no sender writes them): heard once, then gone, not warned about forever."""
    doc = clean_firestore.collection(Collections.HANDOFFS).document("conn-b")
    doc.set(
        {"accounts": ["acct-1", 7, "bad/id"], "clean": [{**entry("acct-1", 1), "account": "bad/id"}, "x"]}
    )
    hints, heard = FirestoreHandoffHints(clean_firestore), Heard()
    hints.listen("conn-b", heard)
    try:
        wait_until("the valid hint heard", lambda: hearing(heard, hints, {"acct-1": None}), 30)
        wait_until(
            "every entry cleared", lambda: firestore_rig(clean_firestore).raw("conn-b") == ([], []), 30
        )
    finally:
        hints.stop()
    assert len(heard.hints) == 1


def test_entries_shown_again_before_their_clear_landed_are_not_heard_twice() -> None:
    unheard = Unheard()
    three = CleanRelease(released("acct-2", 3, "v3"))
    four = CleanRelease(released("acct-2", 4, "v4"), NewestBackup(2, 3))
    assert unheard.take({"acct-1": None, "acct-2": three}) == {"acct-1": None, "acct-2": three}
    assert unheard.take({"acct-1": None, "acct-2": three, "acct-3": None}) == {"acct-3": None}
    assert unheard.take({"acct-2": four}) == {"acct-2": four}  # released again, at the next epoch
    assert unheard.take({}) == {}  # cleared
    assert unheard.take({"acct-1": None}) == {"acct-1": None}  # hinted anew after the clear
