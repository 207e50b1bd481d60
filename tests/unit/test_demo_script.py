"""The demo's fault script and its judge, by table: what counts as recovered, as a QR, as a failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.demo.observe import AccountDoc, SeenEvent
from connector.demo.script import (
    CONNECTOR_A,
    CONNECTOR_B,
    MIN_ACCOUNTS,
    SCRIPT,
    Baseline,
    Expect,
    Fault,
    Phase,
    expected_phase,
    how_recovered,
    judge,
    pick_targets,
    repaired,
)

JID = "15550000001:1@s.whatsapp.net"
READ_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # update time of the version read at the fault
LATER, EARLIER = READ_AT + timedelta(seconds=3), READ_AT - timedelta(seconds=1)
BASE = Baseline("acct-01", JID, "t1", since=100.0, signature="logged_out", updated=READ_AT)


def doc(
    status: str = "connected", jid: str | None = JID, connected: str | None = "t1", updated: datetime = LATER
) -> AccountDoc:
    return AccountDoc(
        "acct-01", status=status, jid=jid, last_connected_at=connected, seen_at=105.0, updated=updated
    )


def event(kind: str, generation: int | None = None, connector: str = CONNECTOR_A) -> SeenEvent:
    return SeenEvent("acct-01", kind, connector, 3, generation, None, seen_at=104.0)


@pytest.mark.parametrize(
    ("current", "events", "phase"),
    [
        (None, [], Phase.WAITING),
        (doc(), [], Phase.WAITING),  # still the connection from before the fault
        (doc("restoring", connected="t1"), [], Phase.WAITING),
        (doc("needs_restore"), [event("logged_out")], Phase.WAITING),
        (doc(connected="t2"), [event("logged_out"), event("restored", 4)], Phase.RECOVERED),
        (doc(connected="t2"), [], Phase.WAITING),  # the fault has not shown yet: an older connection
        (doc(connected="t2", updated=EARLIER), [event("logged_out")], Phase.WAITING),  # a stale version
        (doc(connected="t2", jid="15550000001:2@s.whatsapp.net"), [event("logged_out")], Phase.OTHER_DEVICE),
        (doc("needs_qr"), [event("wiped")], Phase.NEEDS_QR),
        (doc("needs_qr"), [event("session_missing")], Phase.NEEDS_QR),
        (doc("needs_qr"), [], Phase.WAITING),  # a late policy write, not a wipe: the connector said nothing
        (doc("needs_qr"), [event("logged_out")], Phase.WAITING),
        (doc(connected="t2"), [event("logged_out"), event("pairing")], Phase.QR_ASKED),  # a QR, even if back
        (doc("pairing"), [event("pairing")], Phase.QR_ASKED),
    ],
)
def test_judge(current: AccountDoc | None, events: list[SeenEvent], phase: Phase) -> None:
    assert judge(BASE, current, events).phase is phase


def test_a_verdict_carries_the_arrival_time_of_the_record_that_decided_it() -> None:
    assert judge(BASE, doc(connected="t2"), [event("logged_out")]).at == 105.0
    assert judge(BASE, doc(connected="t2"), [event("pairing")]).at == 104.0
    assert judge(BASE, doc(), []).at is None


def test_an_account_never_connected_before_recovers_on_its_first_connection() -> None:
    base = Baseline("acct-01", None, None, since=1.0, signature="lease_acquired")
    assert judge(base, doc(connected="t1", jid=JID), [event("lease_acquired")]).phase is Phase.RECOVERED


@pytest.mark.parametrize(
    ("events", "line"),
    [
        ([], "reconnected"),
        ([event("connected")], "reconnected"),
        ([event("restored", 2)], f"restored gen 2 on {CONNECTOR_A}"),
        ([event("restored", 2, CONNECTOR_B), event("restored", 3)], f"restored gen 3 on {CONNECTOR_A}"),
        ([event("logged_out"), event("restored", 5)], f"1 logout, restored gen 5 on {CONNECTOR_A}"),
        ([event("logged_out"), event("logged_out")], "2 logouts"),
    ],
)
def test_how_recovered(events: list[SeenEvent], line: str) -> None:
    assert how_recovered(events) == line


def test_repaired_wants_a_new_device_connected() -> None:
    new = "15550000001:2@s.whatsapp.net"
    assert repaired(BASE, None).phase is Phase.WAITING
    assert repaired(BASE, doc("pairing", jid=None)).phase is Phase.WAITING
    assert repaired(BASE, doc(connected="t2")).phase is Phase.WAITING  # the old device
    assert repaired(BASE, doc(connected="t2", jid=new)).phase is Phase.RECOVERED


ACCOUNTS = ["acct-01", "acct-02", "acct-03", "acct-04"]


def docs(**holders: str) -> dict[str, AccountDoc]:
    return {a: AccountDoc(a, status="connected", holder=h) for a, h in holders.items()}


@pytest.mark.parametrize(
    ("fault", "current", "used", "targets"),
    [
        (
            Fault.WIPE_DISK_AND_RESTART,
            docs(**{"acct-01": CONNECTOR_A, "acct-02": CONNECTOR_B}),
            set(),
            ["acct-01"],
        ),
        (Fault.KILL_CONNECTOR, docs(**{"acct-01": CONNECTOR_A, "acct-02": CONNECTOR_B}), set(), ["acct-02"]),
        (Fault.KILL_CONNECTOR, docs(**{"acct-01": CONNECTOR_A}), set(), []),
        (Fault.TRANSIENT_LOGOUT, docs(**dict.fromkeys(ACCOUNTS, CONNECTOR_A)), set(), ["acct-01"]),
        (Fault.REAL_LOGOUT, docs(**dict.fromkeys(ACCOUNTS, CONNECTOR_A)), {"acct-01"}, ["acct-02"]),
        (
            Fault.STREAM_REPLACED,
            docs(**dict.fromkeys(ACCOUNTS, CONNECTOR_A)),
            {"acct-01", "acct-02"},
            ["acct-03"],
        ),
    ],
)
def test_pick_targets(
    fault: Fault, current: dict[str, AccountDoc], used: set[str], targets: list[str]
) -> None:
    (step,) = [s for s in SCRIPT if s.fault is fault]
    assert pick_targets(step, current, ACCOUNTS, used) == targets


def test_an_account_level_fault_prefers_a_connected_account() -> None:
    (step,) = [s for s in SCRIPT if s.fault is Fault.TRANSIENT_LOGOUT]
    current = docs(**dict.fromkeys(ACCOUNTS, CONNECTOR_A))
    current["acct-01"] = AccountDoc("acct-01", status="restoring", holder=CONNECTOR_A)
    assert pick_targets(step, current, ACCOUNTS, set()) == ["acct-02"]


def test_the_script_has_each_fault_once_and_one_real_logout() -> None:
    assert sorted(s.fault for s in SCRIPT) == sorted(Fault)
    assert [s.fault for s in SCRIPT if s.expect is Expect.QR] == [Fault.REAL_LOGOUT]
    assert [s.connector for s in SCRIPT if not s.per_account] == [CONNECTOR_A, CONNECTOR_B]
    assert sum(s.per_account for s in SCRIPT) == MIN_ACCOUNTS
    assert {expected_phase(s) for s in SCRIPT} == {Phase.RECOVERED, Phase.NEEDS_QR}
