"""The simulated WhatsApp's registry: who is let in at login, as a table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from connector.sim import wire
from connector.sim.registry import ConnectionRecord, Registry, overlapping

NOW = datetime(2026, 5, 1, tzinfo=UTC)
FP = "f" * 32
OTHER_FP = "e" * 32


def linked() -> tuple[Registry, str]:
    registry = Registry()
    device, _ = registry.link("acct", FP, NOW)
    return registry, device.jid


def hello(jid: str, account: str = "acct", fp: str = FP) -> wire.Hello:
    return wire.Hello(account=account, jid=jid, noise_fp=fp, label="t")


REFUSED_401 = wire.LoggedOutFrame(reason_code=401, on_connect=True)


def _ban(r: Registry) -> None:
    r.accounts["acct"].ban_until = NOW + timedelta(hours=1)


def _ban_over(r: Registry) -> None:
    r.accounts["acct"].ban_until = NOW - timedelta(seconds=1)


def _logout_next(r: Registry) -> None:
    r.accounts["acct"].logout_next_connect = True


def _fail_503(r: Registry) -> None:
    r.accounts["acct"].failures_next_connects.append(503)


def _fail_405(r: Registry) -> None:
    r.accounts["acct"].failures_next_connects.append(405)


def _unlink(r: Registry) -> None:
    r.unlink("acct")


def _repair(r: Registry) -> None:
    r.link("acct", OTHER_FP, NOW)


def _other_account(r: Registry) -> None:
    r.link("other", OTHER_FP, NOW)


Case = tuple[str, Callable[[Registry], None] | None, dict[str, str], wire.Frame | None]
CASES: list[Case] = [
    ("a linked device", None, {}, None),
    ("an unknown jid", None, {"jid": "19999999999:1@s.whatsapp.net"}, REFUSED_401),
    ("another noise key", None, {"fp": OTHER_FP}, REFUSED_401),
    ("an unlinked device", _unlink, {}, REFUSED_401),
    ("a device replaced by a newer pairing", _repair, {}, REFUSED_401),
    ("the device presented for another account", _other_account, {"account": "other"}, REFUSED_401),
    ("a logout queued for the next login", _logout_next, {}, REFUSED_401),
    (
        "a banned account",
        _ban,
        {},
        wire.TemporaryBanFrame(code=101, expires_at="2026-05-01T01:00:00.000000Z"),
    ),
    ("a ban that is over", _ban_over, {}, None),
    ("a queued 503", _fail_503, {}, wire.ConnectFailureFrame(code=503, message="simulated server error 503")),
    ("a queued 405", _fail_405, {}, wire.ClientOutdatedFrame()),
]


@pytest.mark.parametrize(("name", "setup", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_admission(
    name: str, setup: Callable[[Registry], None] | None, change: dict[str, str], expected: wire.Frame | None
) -> None:
    registry, jid = linked()
    if setup is not None:
        setup(registry)
    request = hello(change.get("jid", jid), change.get("account", "acct"), change.get("fp", FP))
    assert registry.admit(request, NOW) == expected


def test_one_shot_refusals_are_used_up() -> None:
    registry, jid = linked()
    _logout_next(registry)
    _fail_503(registry)
    assert registry.admit(hello(jid), NOW) == REFUSED_401
    assert isinstance(registry.admit(hello(jid), NOW), wire.ConnectFailureFrame)
    assert registry.admit(hello(jid), NOW) is None


def test_pairing_again_gives_a_new_device_and_unlinks_the_old() -> None:
    registry, first = linked()
    second, replaced = registry.link("acct", OTHER_FP, NOW)
    assert replaced is not None and replaced.jid == first
    assert second.jid != first and second.jid.split(":")[0] == first.split(":")[0]  # same phone
    assert list(registry.devices) == [second.jid]


def test_accounts_get_distinct_phone_numbers() -> None:
    registry = Registry()
    phones = {registry.account(f"a{i}").phone for i in range(50)}
    assert len(phones) == 50


def test_records_and_overlaps() -> None:
    registry, jid = linked()
    first = registry.open_record("acct", jid, "host-a", NOW)
    registry.close_record(first.conn_id, "stream_replaced", NOW + timedelta(seconds=5))
    second = registry.open_record("acct", jid, "host-b", NOW + timedelta(seconds=5))
    records = registry.connections(jid=jid)
    assert [(r.label, r.end_reason) for r in records] == [("host-a", "stream_replaced"), ("host-b", None)]
    assert overlapping(records) == []
    assert registry.connections(account="acct") == records
    assert registry.connections(account="nobody") == []

    late = ConnectionRecord(conn_id="x", account="acct", jid=jid, label="host-c", start=second.start)
    assert overlapping([*records, late]) == [(records[1], late)]
