"""Judging app requests, by table: shape, authority, the command each becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from policy import PolicyConfig
from policy.requests import already_decided, judge
from wa_wire import CommandAction, RequestStatus, command_id_for
from wa_wire.codec import utc_timestamp

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = PolicyConfig()
OWNERS = ["uid-owner"]


def req(by: str = "uid-owner", action: str = "reconnect", **extra: Any) -> dict[str, Any]:
    return {"account_id": "acct-1", "action": action, "params": {}, "requested_by": by, **extra}


@pytest.mark.parametrize(
    ("data", "owners", "verdict"),
    [
        (req(), OWNERS, "accepted"),
        (req(action="restore", params={"generation": 2}), OWNERS, "accepted"),
        (req(action="restore"), OWNERS, "accepted"),  # no generation: the newest good one
        (req(by="uid-admin", admin=True), OWNERS, "accepted"),
        (req(by="uid-admin", admin=True), None, "accepted"),  # admins may act on accounts with no document
        (req(by="uid-owner", admin=False), OWNERS, "accepted"),
        (
            req(by="uid-admin"),
            OWNERS,
            "neither an owner of account acct-1 nor an admin (admins: send admin: true)",
        ),
        (req(by="uid-x"), OWNERS, "neither an owner"),
        (req(), None, "neither an owner"),  # no account document
        (req(), "uid-owner", "neither an owner"),  # owners not a list: nobody owns it
        (req(action="release"), OWNERS, "malformed request: action: must be one of"),
        (req(action="restore", params={"generation": -1}), OWNERS, "params.generation: must not be negative"),
        (req(action="restore", params={"generation": True}), OWNERS, "params.generation: must be int"),
        (req(params={"force": True}), OWNERS, "params.force: not a parameter of reconnect"),
        (req(params="none"), OWNERS, "malformed request: params: must be an object"),
        (req(admin="true"), OWNERS, "malformed request: admin: must be a boolean"),
        (req(note="hi"), OWNERS, "malformed request: note: unknown field"),
        ({**req(), "account_id": None}, OWNERS, "malformed request: account_id: must be a string"),
        (req(by="u" * 126), ["u" * 126], "cannot issue the command: issued_by: longer than 128 characters"),
    ],
)
def test_judge(data: dict[str, Any], owners: object, verdict: str) -> None:
    result = judge("req-1", data, owners, NOW, CFG)
    if verdict == "accepted":
        assert result.decision.status is RequestStatus.ACCEPTED and result.command is not None
    else:
        assert result.decision.status is RequestStatus.REJECTED and result.command is None
        assert result.decision.error is not None and verdict in result.decision.error


def test_an_accepted_request_becomes_exactly_this_command() -> None:
    result = judge("req-7", req(action="restore", params={"generation": 2}), OWNERS, NOW, CFG)
    command = result.command
    assert command is not None
    assert result.decision.command_id == command_id_for("req-7", CommandAction.RESTORE)
    assert (command.account_id, command.action, command.params) == (
        "acct-1",
        CommandAction.RESTORE,
        {"generation": 2},
    )
    assert (command.issued_by, command.source_event_id) == ("app:uid-owner", "req-7")
    assert (command.issued_at, command.expires_at) == (
        utc_timestamp(NOW),
        utc_timestamp(NOW + CFG.command_ttl),
    )


@pytest.mark.parametrize(
    ("data", "decided"),
    [
        (req(), False),
        ({**req(), "status": "accepted"}, True),
        ({**req(), "error": "x"}, True),
        ({**req(), "status": None}, False),
    ],
)
def test_already_decided(data: dict[str, Any], decided: bool) -> None:
    assert already_decided(data) is decided
