"""neonize event -> protocol report, table-tested with neonize's own event classes.

The classes are neonize's generated protobuf messages (what `neonize.events`
re-exports, checked below against that module's source), loaded from neonize's
`proto` folder without importing the `neonize` package: that would load its Go
core into the test process, where other tests open session files with sqlite3
(NOTES.md; the vault refuses to run in a process that loaded neonize).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connector.workers import protocol as wp
from connector.workers.neonize_events import (
    CONNECT_FAILURE_CODES,
    LIFECYCLE_EVENTS,
    SessionDatabaseError,
    format_jid,
    parse_device_list,
    qr_report,
    translate,
)


def _neonize_event_classes() -> tuple[Any, SimpleNamespace]:
    spec = importlib.util.find_spec("neonize")  # locates the package without running it
    assert spec is not None and spec.origin is not None
    package = Path(spec.origin).parent
    sys.path.insert(0, str(package / "proto"))  # what neonize/proto/__init__.py does
    protos = importlib.import_module("Neonize_pb2")
    aliases = re.findall(
        r"from \.proto\.Neonize_pb2 import (\w+) as (\w+)", (package / "events.py").read_text()
    )
    return protos, SimpleNamespace(**{alias: getattr(protos, name) for name, alias in aliases})


pb, ev = _neonize_event_classes()
JID, Node, NodeAttrs = pb.JID, pb.Node, pb.NodeAttrs
assert "neonize" not in sys.modules

A = "acct-1"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
REASONS = ev.ConnectFailureEv.DESCRIPTOR.fields_by_name["Reason"].enum_type.values_by_name
BANS = ev.TemporaryBanEv.DESCRIPTOR.fields_by_name["Code"].enum_type.values_by_name
WHATSAPP_CODE = {
    "GENERIC": 400,
    "LOGGED_OUT": 401,
    "TEMP_BANNED": 402,
    "MAIN_DEVICE_GONE": 403,
    "UNKNOWN_LOGOUT": 406,
    "CLIENT_OUTDATED": 405,
    "BAD_USER_AGENT": 409,
    "INTERNAL_SERVER_ERROR": 500,
    "EXPERIMENTAL": 501,
    "SERVICE_UNAVAILABLE": 503,
}


def node(**attrs: int | str) -> Any:
    out = []
    for name, value in attrs.items():
        if isinstance(value, int):
            out.append(NodeAttrs(name=name, integer=value))
        else:
            out.append(NodeAttrs(name=name, text=value))
    return Node(Tag="failure", Attrs=out)


def test_every_reason_value_of_neonize_has_a_whatsapp_code() -> None:
    assert {name: CONNECT_FAILURE_CODES[v.number] for name, v in REASONS.items()} == WHATSAPP_CODE


@pytest.mark.parametrize("name", sorted(WHATSAPP_CODE))
@pytest.mark.parametrize("on_connect", [True, False])
def test_logged_out_reports_each_reason_code(name: str, on_connect: bool) -> None:
    event = ev.LoggedOutEv(OnConnect=on_connect, Reason=REASONS[name].number)
    assert translate(A, event, NOW) == wp.LoggedOut(
        account=A, reason_code=WHATSAPP_CODE[name], on_connect=on_connect
    )


@pytest.mark.parametrize("on_connect", [True, False])
def test_logged_out_without_a_reason_reports_no_code(on_connect: bool) -> None:
    assert translate(A, ev.LoggedOutEv(OnConnect=on_connect), NOW) == wp.LoggedOut(
        account=A, reason_code=None, on_connect=on_connect
    )


CONNECT_FAILURE_TABLE: list[tuple[str, wp.Message]] = [
    ("GENERIC", wp.Disconnected(account=A, reason="connect failure 400: nope", code=400)),
    ("LOGGED_OUT", wp.LoggedOut(account=A, reason_code=401, on_connect=True)),
    ("TEMP_BANNED", wp.TemporaryBan(account=A, code=None, expires_at=None)),
    ("MAIN_DEVICE_GONE", wp.LoggedOut(account=A, reason_code=403, on_connect=True)),
    ("UNKNOWN_LOGOUT", wp.LoggedOut(account=A, reason_code=406, on_connect=True)),
    ("CLIENT_OUTDATED", wp.ClientOutdated(account=A)),
    ("BAD_USER_AGENT", wp.Disconnected(account=A, reason="connect failure 409: nope", code=409)),
    ("INTERNAL_SERVER_ERROR", wp.Disconnected(account=A, reason="connect failure 500: nope", code=500)),
    ("EXPERIMENTAL", wp.Disconnected(account=A, reason="connect failure 501: nope", code=501)),
    ("SERVICE_UNAVAILABLE", wp.Disconnected(account=A, reason="connect failure 503: nope", code=503)),
]


@pytest.mark.parametrize(("name", "expected"), CONNECT_FAILURE_TABLE)
def test_connect_failure_reports_each_reason(name: str, expected: wp.Message) -> None:
    event = ev.ConnectFailureEv(Reason=REASONS[name].number, Message="nope")
    assert translate(A, event, NOW) == expected


def test_the_connect_failure_table_covers_every_reason() -> None:
    assert {name for name, _ in CONNECT_FAILURE_TABLE} == set(REASONS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (node(reason="429"), wp.Disconnected(account=A, reason="connect failure 429", code=429)),
        (node(reason=418), wp.Disconnected(account=A, reason="connect failure 418", code=418)),
        (node(reason="401"), wp.LoggedOut(account=A, reason_code=401, on_connect=True)),
        (
            node(reason="402", code="103", expire=3600),
            wp.TemporaryBan(account=A, code=103, expires_at="2026-03-01T13:00:00.000000Z"),
        ),
        (node(reason="soon"), wp.Disconnected(account=A, reason="connect failure with no code", code=None)),
        (None, wp.Disconnected(account=A, reason="connect failure with no code", code=None)),
    ],
)
def test_connect_failure_without_a_reason_reports_the_raw_code(raw: Any, expected: wp.Message) -> None:
    event = ev.ConnectFailureEv() if raw is None else ev.ConnectFailureEv(Raw=raw)
    assert translate(A, event, NOW) == expected


BAN_CODE = {
    "SEND_TO_TOO_MANY_PEOPLE": 101,
    "BLOCKED_BY_USERS": 102,
    "CREATED_TOO_MANY_GROUPS": 103,
    "SENT_TOO_MANY_SAME_MESSAGE": 104,
    "BROADCAST_LIST": 106,
}


def test_every_ban_reason_of_neonize_is_in_the_table() -> None:
    assert set(BAN_CODE) == set(BANS)


@pytest.mark.parametrize(("name", "code"), sorted(BAN_CODE.items()))
def test_temporary_ban_reports_each_code_and_the_expiry(name: str, code: int) -> None:
    event = ev.TemporaryBanEv(Code=BANS[name].number, Expire=90)
    assert translate(A, event, NOW) == wp.TemporaryBan(
        account=A, code=code, expires_at="2026-03-01T12:01:30.000000Z"
    )


def test_temporary_ban_without_code_or_expiry() -> None:
    assert translate(A, ev.TemporaryBanEv(), NOW) == wp.TemporaryBan(account=A, code=None, expires_at=None)


SIMPLE_TABLE: list[tuple[Any, wp.Message | None]] = [
    (ev.ConnectedEv(status=True), wp.Connected(account=A)),
    (ev.DisconnectedEv(status=True), wp.Disconnected(account=A, reason="connection closed")),
    (ev.StreamReplacedEv(), wp.StreamReplaced(account=A)),
    (ev.ClientOutdatedEv(), wp.ClientOutdated(account=A)),
    (ev.KeepAliveRestoredEv(), wp.KeepaliveRestored(account=A)),
    (ev.KeepAliveTimeoutEv(ErrorCount=3, LastSuccess=1), wp.KeepaliveTimeout(account=A, count=3)),
    (ev.StreamErrorEv(Code="515"), wp.StreamError(account=A, code=515)),
    (ev.StreamErrorEv(Code="", Raw=node(code="503")), wp.StreamError(account=A, code=503)),
    (ev.StreamErrorEv(Code="conflict"), wp.StreamError(account=A, code=None)),
    (
        ev.PairStatusEv(ID=JID(User="15550001111", Device=3, Server="s.whatsapp.net"), Status=2),
        wp.Paired(account=A, jid="15550001111:3@s.whatsapp.net"),
    ),
    (
        ev.PairStatusEv(Status=1, Error="bad signature"),
        wp.Disconnected(account=A, reason="pairing failed: bad signature"),
    ),
    (ev.QREv(Codes=["2@abc", "2@def"]), None),
]


@pytest.mark.parametrize(("event", "expected"), SIMPLE_TABLE, ids=lambda v: type(v).__name__)
def test_other_lifecycle_events(event: Any, expected: wp.Message | None) -> None:
    assert translate(A, event, NOW) == expected


def test_every_lifecycle_event_class_is_covered_by_a_table() -> None:
    seen = {type(e).DESCRIPTOR.name for e, _ in SIMPLE_TABLE} | {
        "LoggedOut",
        "ConnectFailure",
        "TemporaryBan",
    }
    assert seen == set(LIFECYCLE_EVENTS)


def test_a_non_lifecycle_event_needs_no_report() -> None:
    assert translate(A, ev.ReceiptEv(), NOW) is None


def test_qr_codes_carry_whatsmeows_lifetimes() -> None:
    assert qr_report(A, b"2@first", 0, NOW) == wp.Qr(
        account=A, code="2@first", expires_at="2026-03-01T12:01:00.000000Z"
    )
    assert qr_report(A, "2@next", 1, NOW).expires_at == "2026-03-01T12:00:20.000000Z"


def test_format_jid_keeps_a_device_already_in_the_user_part() -> None:
    assert format_jid(JID(User="15550001111:7", Server="s.whatsapp.net")) == "15550001111:7@s.whatsapp.net"
    assert format_jid(JID(User="15550001111", Server="s.whatsapp.net")) == "15550001111@s.whatsapp.net"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", []),
        (b"15550001111:7@s.whatsapp.net,,,true", ["15550001111:7@s.whatsapp.net"]),
        (
            b"1@s.whatsapp.net,a,b,true|\x01|2:1@s.whatsapp.net,,,false",
            ["1@s.whatsapp.net", "2:1@s.whatsapp.net"],
        ),
    ],
)
def test_parse_device_list(raw: bytes, expected: list[str]) -> None:
    assert parse_device_list(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [b"error: failed to upgrade database: file is not a database", b"garbage without a jid"],
)
def test_parse_device_list_rejects_errors(raw: bytes) -> None:
    with pytest.raises(SessionDatabaseError):
        parse_device_list(raw)


def test_the_classes_are_the_ones_neonize_events_exports() -> None:
    assert ev.LoggedOutEv is pb.LoggedOut and ev.QREv is pb.QR and ev.ConnectFailureEv is pb.ConnectFailure
    assert {c.DESCRIPTOR.name for c in vars(ev).values()} >= set(LIFECYCLE_EVENTS)
