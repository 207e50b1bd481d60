"""The wire contract: golden files round-trip, and every kind of bad input is one WireError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wa_wire import (
    Command,
    CommandAction,
    EventType,
    LifecycleEvent,
    Request,
    RequestAction,
    RequestDecision,
    RequestStatus,
    WireError,
    command_id_for,
    decode,
    encode,
    from_json,
    to_json,
)

DATA = Path(__file__).parent.parent / "data"
KINDS: list[tuple[str, type[Any]]] = [
    ("events", LifecycleEvent),
    ("commands", Command),
    ("requests", Request),
]


def golden(kind: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / kind / f"{name}.json").read_text())
    return data


def test_every_type_has_a_golden_file() -> None:
    assert {p.stem for p in (DATA / "events").glob("*.json")} == {t.value for t in EventType}
    assert {p.stem for p in (DATA / "commands").glob("*.json")} == {a.value for a in CommandAction}
    assert {p.stem for p in (DATA / "requests").glob("*.json")} == {a.value for a in RequestAction}


@pytest.mark.parametrize(
    ("kind", "cls", "path"),
    [(kind, cls, p) for kind, cls in KINDS for p in sorted((DATA / kind).glob("*.json"))],
    ids=lambda v: v.stem if isinstance(v, Path) else str(getattr(v, "__name__", v)),
)
def test_golden_round_trip(kind: str, cls: type[Any], path: Path) -> None:
    text = path.read_text()
    obj = from_json(cls, text)
    assert encode(obj) == json.loads(text)
    assert from_json(cls, to_json(obj)) == obj
    if kind == "events":
        assert obj.type.value == path.stem
    else:
        assert obj.action.value == path.stem


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is DROP:
            del out[key]
        else:
            out[key] = value
    return out


DROP = object()
EVENT = golden("events", "logged_out")
COMMAND = golden("commands", "restore")
REQUEST = golden("requests", "restore")

BAD_INPUT = [
    # (case, class, input, field named, words in the problem)
    ("unknown event type", LifecycleEvent, with_changes(EVENT, type="exploded"), "type", "one of"),
    ("missing field", LifecycleEvent, with_changes(EVENT, at=DROP), "at", "missing"),
    ("extra field", LifecycleEvent, with_changes(EVENT, qr="2@secret"), "qr", "unknown field"),
    ("string for int", LifecycleEvent, with_changes(EVENT, lease_epoch="3"), "lease_epoch", "integer"),
    ("bool for int", LifecycleEvent, with_changes(EVENT, reason_code=True), "reason_code", "integer"),
    ("int for string", LifecycleEvent, with_changes(EVENT, detail=5), "detail", "string"),
    ("null for string", LifecycleEvent, with_changes(EVENT, account_id=None), "account_id", "string"),
    ("oversized id", LifecycleEvent, with_changes(EVENT, account_id="a" * 129), "account_id", "128"),
    ("empty id", LifecycleEvent, with_changes(EVENT, event_id=""), "event_id", "empty"),
    ("oversized detail", LifecycleEvent, with_changes(EVENT, detail="x" * 2001), "detail", "2000"),
    ("negative epoch", LifecycleEvent, with_changes(EVENT, lease_epoch=-1), "lease_epoch", "at least"),
    ("not a timestamp", LifecycleEvent, with_changes(EVENT, at="yesterday"), "at", "RFC 3339"),
    ("not UTC", LifecycleEvent, with_changes(EVENT, at="2026-11-26T01:02:03+02:00"), "at", "UTC"),
    ("no time zone", LifecycleEvent, with_changes(EVENT, at="2026-11-26T01:02:03"), "at", "UTC"),
    ("future schema", LifecycleEvent, with_changes(EVENT, schema=2), "schema", "newer"),
    ("not an object", LifecycleEvent, ["a", "list"], "", "JSON object"),
    ("unknown action", Command, with_changes(COMMAND, action="format_disk"), "action", "one of"),
    ("foreign param", Command, with_changes(COMMAND, params={"path": "/"}), "params.path", "not a param"),
    ("param type", Command, with_changes(COMMAND, params={"generation": "7"}), "params.generation", "int"),
    (
        "nested param",
        Command,
        with_changes(COMMAND, params={"generation": [7]}),
        "params.generation",
        "string",
    ),
    ("bad issuer", Command, with_changes(COMMAND, issued_by="mallory"), "issued_by", "policy"),
    (
        "expiry before issue",
        Command,
        with_changes(COMMAND, expires_at=COMMAND["issued_at"]),
        "expires_at",
        "later",
    ),
    ("bad status", Command, with_changes(COMMAND, status="maybe"), "status", "one of"),
    (
        "result shape",
        Command,
        with_changes(COMMAND, result={"ok": "yes", "message": ""}),
        "result.ok",
        "boolean",
    ),
    (
        "result extra",
        Command,
        with_changes(COMMAND, result={"ok": True, "message": "", "x": 1}),
        "result.x",
        "unknown",
    ),
    ("request release", Request, with_changes(REQUEST, action="release"), "action", "one of"),
    ("request extra", Request, with_changes(REQUEST, status="accepted"), "status", "unknown field"),
    ("request long id", Request, with_changes(REQUEST, account_id="a" * 200), "account_id", "128"),
    ("request no uid", Request, with_changes(REQUEST, requested_by=DROP), "requested_by", "missing"),
]


@pytest.mark.parametrize(("case", "cls", "data", "field", "words"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_raises_one_wire_error_naming_the_field(
    case: str, cls: type[Any], data: Any, field: str, words: str
) -> None:
    with pytest.raises(WireError) as caught:
        decode(cls, data)
    assert caught.value.field == field, case
    assert words in caught.value.problem, case


@pytest.mark.parametrize(
    "text",
    [b"", b"{", b"\xff\xfe", b"null", b"[]", b"x" * 70_000],
    ids=["empty", "truncated", "not utf8", "null", "array", "oversized"],
)
def test_garbage_json_is_a_wire_error(text: bytes) -> None:
    with pytest.raises(WireError):
        from_json(LifecycleEvent, text)


def test_wire_error_does_not_echo_the_value() -> None:
    with pytest.raises(WireError) as caught:
        decode(LifecycleEvent, with_changes(EVENT, detail="SECRET" * 400))
    assert "SECRET" not in str(caught.value)


def test_construction_validates_too() -> None:
    with pytest.raises(WireError, match="account_id"):
        LifecycleEvent(**{**decode(LifecycleEvent, EVENT).__dict__, "account_id": ""})


def test_new_event_has_fresh_id_and_canonical_time() -> None:
    moment = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)
    one = LifecycleEvent.new(EventType.CONNECTED, account_id="a", connector_id="c", lease_epoch=1, at=moment)
    two = LifecycleEvent.new(EventType.CONNECTED, account_id="a", connector_id="c", lease_epoch=1, at=moment)
    assert one.event_id != two.event_id
    assert one.at == "2026-11-26T01:02:03.000000Z"
    assert one.pubsub_attributes() == {"account_id": "a", "type": "connected"}


def test_command_id_is_stable_per_cause_and_action() -> None:
    first = command_id_for("evt-1", CommandAction.RESTORE)
    assert first == command_id_for("evt-1", CommandAction.RESTORE)
    assert first != command_id_for("evt-1", CommandAction.WIPE)
    assert first != command_id_for("evt-2", CommandAction.RESTORE)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": RequestStatus.ACCEPTED}, "command_id"),
        ({"status": RequestStatus.REJECTED}, "error"),
        ({"status": RequestStatus.ACCEPTED, "command_id": "c", "error": "x"}, "error"),
    ],
)
def test_request_decision_shape(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError) as caught:
        RequestDecision(**kwargs)
    assert caught.value.field == field
