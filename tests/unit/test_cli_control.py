"""What `wa-keeper wipe|reconnect|restore` print for each state of their command (tables)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.commands.control import describe, live_holder, outcome, positive_seconds, timeout_line
from wa_wire import CommandAction

A = "acct-1"
RESTORE, WIPE = CommandAction.RESTORE, CommandAction.WIPE


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({}, "restore of acct-1: pending, waiting for the connector holding it to claim it"),
        (
            {"status": "pending"},
            "restore of acct-1: pending, waiting for the connector holding it to claim it",
        ),
        (
            {"status": "claimed", "claimed_by": "conn-a", "claimed_epoch": 4},
            "restore of acct-1: claimed by conn-a (lease epoch 4), running",
        ),
        ({"status": "done", "claimed_by": "conn-a"}, "restore of acct-1: done by conn-a"),
        ({"status": "expired"}, "restore of acct-1: expired"),
    ],
)
def test_progress_lines(data: dict[str, Any], line: str) -> None:
    assert describe(RESTORE, A, data) == line


@pytest.mark.parametrize(
    ("data", "code", "line"),
    [
        (
            {"status": "done", "result": {"ok": True, "message": "restored generation 3"}},
            0,
            "restore of acct-1 done: restored generation 3",
        ),
        ({"status": "done"}, 0, "restore of acct-1 done"),
        (
            {"status": "failed", "result": {"ok": False, "message": "restore failed: no generation 9"}},
            1,
            "restore of acct-1 failed: restore failed: no generation 9",
        ),
        ({"status": "failed", "result": "garbage"}, 1, "restore of acct-1 failed: no reason given"),
        ({"status": "rejected", "error": "not allowed"}, 1, "restore of acct-1 rejected: not allowed"),
        ({"status": "expired"}, 1, "restore of acct-1 expired before a connector claimed it"),
    ],
)
def test_outcomes(data: dict[str, Any], code: int, line: str) -> None:
    assert outcome(RESTORE, A, data) == (code, line)


def test_the_timeout_line_says_whether_anyone_claimed_it() -> None:
    unclaimed = timeout_line(WIPE, A, {"status": "pending"}, 2.5)
    assert unclaimed.startswith("wipe of acct-1 did not finish within 2.5 s: no connector claimed it")
    running = timeout_line(WIPE, A, {"status": "claimed", "claimed_by": "conn-b"}, 60)
    assert (
        running
        == "wipe of acct-1 did not finish within 60 s: still running on conn-b (see `wa-keeper status`)"
    )


@pytest.mark.parametrize("text", ["0", "-1", "nan", "soon", "86401", "inf"])
def test_bad_timeouts_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_seconds(text)


def test_a_lease_is_live_until_its_ttl_passes_on_the_servers_clock() -> None:
    renewed = datetime(2026, 1, 1, tzinfo=UTC)
    lease = {"holder": "conn-a", "renewed_at": renewed, "ttl_ms": 15_000}
    assert live_holder(lease, renewed + timedelta(seconds=14)) == "conn-a"
    assert live_holder(lease, renewed + timedelta(seconds=15)) is None
    assert live_holder({"holder": "conn-a"}, renewed) is None
