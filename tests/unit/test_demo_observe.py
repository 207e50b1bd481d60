"""What the demo reads from account documents and lifecycle events, and how the dashboard shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from connector.clock import FakeClock
from connector.demo.dashboard import account_row, age, render
from connector.demo.observe import AccountDoc, Observations
from wa_wire import EventType, LifecycleEvent, to_json

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FULL: dict[str, Any] = {
    "status": "connected",
    "status_reason": "connected",
    "holder": "keeper-a",
    "lease_epoch": 4,
    "jid": "15550000001:1@s.whatsapp.net",
    "last_connected_at": NOW,
    "backup": {"generation": 7, "at": NOW - timedelta(seconds=12), "good": True},
    "strikes": {"count": 1},
    "qr": {"code": "2@secret", "expires_at": "x"},
}


def test_an_account_document_is_read_field_by_field() -> None:
    doc = AccountDoc.of("acct-01", FULL, seen_at=5.0)
    assert (doc.status, doc.holder, doc.epoch, doc.jid) == ("connected", "keeper-a", 4, FULL["jid"])
    assert (doc.backup_generation, doc.backup_good, doc.strikes, doc.qr_code) == (7, True, 1, "2@secret")
    assert doc.last_connected_at == str(NOW)
    assert "secret" not in repr(doc)  # a QR code is shown on the terminal, never in a repr or log


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"status": None, "holder": 3, "lease_epoch": "4", "backup": "x", "strikes": [], "qr": "code"},
        {"backup": {"generation": "7", "at": "yesterday", "good": "yes"}, "strikes": {"count": None}},
    ],
)
def test_missing_or_ill_typed_fields_read_as_unknown(data: dict[str, Any]) -> None:
    doc = AccountDoc.of("acct-01", data, seen_at=0.0)
    assert doc == AccountDoc("acct-01", seen_at=0.0)


def event(kind: EventType, account: str = "acct-01") -> bytes:
    built = LifecycleEvent.new(kind, account_id=account, connector_id="keeper-a", lease_epoch=2, at=NOW)
    return to_json(built).encode()


def test_events_are_kept_with_their_arrival_time_and_bad_ones_counted() -> None:
    clock = FakeClock()
    store = Observations(clock.monotonic)
    store.put_event(event(EventType.LOGGED_OUT))
    clock.advance(5)
    since = clock.monotonic()
    store.put_event(event(EventType.RESTORED))
    store.put_event(event(EventType.CONNECTED, "acct-02"))
    store.put_event(b"{not json")
    store.put_event(b'{"type": "connected"}')
    snap = store.snapshot()
    assert [e.type for e in snap.events_of("acct-01", 0)] == ["logged_out", "restored"]
    assert [e.type for e in snap.events_of("acct-01", since)] == ["restored"]
    assert [e.type for e in snap.events_of("acct-01", 0, "restored")] == ["restored"]
    assert store.dropped_events == 2


def test_documents_keep_the_newest_version() -> None:
    clock = FakeClock()
    store = Observations(clock.monotonic)
    store.put_doc("acct-01", {"status": "restoring"})
    clock.advance(1)
    store.put_doc("acct-01", {"status": "connected"})
    doc = store.snapshot().docs["acct-01"]
    assert (doc.status, doc.seen_at) == ("connected", clock.monotonic())


@pytest.mark.parametrize(
    ("moment", "text"),
    [(None, "-"), (NOW, "0 s"), (NOW - timedelta(seconds=42), "42 s"), (NOW - timedelta(minutes=5), "5 min")],
)
def test_age(moment: datetime | None, text: str) -> None:
    assert age(moment, NOW) == text


def test_a_dashboard_row_shows_status_holder_epoch_backup_and_strikes() -> None:
    doc = AccountDoc.of("acct-01", FULL, seen_at=0.0)
    assert account_row(doc, "connected", NOW) == [
        "connected",
        "keeper-a",
        "4",
        "7 good",
        "12 s",
        "1",
        "connected",
    ]
    assert account_row(None, "-", NOW) == ["-", "-", "-", "-", "-", "-", "-"]


def test_the_dashboard_lists_every_account_and_the_newest_event() -> None:
    store = Observations(FakeClock().monotonic)
    store.put_doc("acct-01", FULL)
    store.put_event(event(EventType.STREAM_REPLACED))
    console = Console(record=True, width=200)
    console.print(render(store.snapshot(), ["acct-01", "acct-02"], "step 5/5", NOW))
    text = console.export_text()
    assert "wa-keeper demo: step 5/5" in text
    assert "stream_replaced" in text
    assert "acct-02" in text
    assert "1 lifecycle events seen" in text
    assert "secret" not in text


def test_an_older_version_arriving_late_does_not_replace_a_newer_one() -> None:
    store = Observations(FakeClock().monotonic)
    store.put_doc("acct-01", {"status": "connected"}, NOW)
    store.put_doc("acct-01", {"status": "restoring"}, NOW - timedelta(seconds=1))
    assert store.snapshot().docs["acct-01"].status == "connected"
    store.put_doc("acct-01", {"status": "reconnecting"}, NOW + timedelta(seconds=1))
    assert store.snapshot().docs["acct-01"].status == "reconnecting"
