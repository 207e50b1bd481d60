"""HintSender: releases of one handoff become a few hint writes, to the other live connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from connector.adapters.memory_hints import HintBoard, MemoryHandoffHints
from connector.handoff_hints import HintSender
from connector.lease_record import LeaseView
from connector.ports import CleanRelease


class Recording(MemoryHandoffHints):
    def __init__(self, board: HintBoard, fail: bool = False) -> None:
        super().__init__(board)
        self.fail = fail
        self.writes: list[tuple[list[str], dict[str, CleanRelease | None]]] = []

    def send(self, to: Sequence[str], released: Mapping[str, CleanRelease | None]) -> None:
        if self.fail:
            raise OSError("firestore unreachable")
        self.writes.append((list(to), dict(released)))
        super().send(to, released)


async def test_releases_close_together_make_one_write_to_every_target() -> None:
    board = HintBoard()
    hints = Recording(board)
    sender = HintSender(hints, lambda: ["conn-b", "conn-c"], delay_s=0.01)
    for n in range(50):
        sender.note(f"acct-{n:02d}", CleanRelease(LeaseView(f"acct-{n:02d}", None, None)) if n % 2 else None)
    await asyncio.sleep(0.05)
    assert len(hints.writes) == 1
    to, released = hints.writes[0]
    assert to == ["conn-b", "conn-c"] and len(released) == 50
    assert released["acct-01"] is not None and released["acct-02"] is None  # clean leases go along
    assert sorted(board.docs["conn-c"]) == sorted(released)


async def test_flush_sends_at_once_and_the_pending_delay_then_sends_nothing_more() -> None:
    hints = Recording(HintBoard())
    sender = HintSender(hints, lambda: ["conn-b"], delay_s=10)
    sender.note("acct-1")
    await sender.flush()
    await asyncio.sleep(0)
    assert hints.writes == [(["conn-b"], {"acct-1": None})]
    await sender.flush()
    assert len(hints.writes) == 1


async def test_no_other_live_connector_no_write() -> None:
    hints = Recording(HintBoard())
    sender = HintSender(hints, list, delay_s=0.01)
    sender.note("acct-1")
    await sender.flush()
    assert hints.writes == []


async def test_a_failed_write_is_logged_and_costs_only_time(caplog: pytest.LogCaptureFixture) -> None:
    sender = HintSender(Recording(HintBoard(), fail=True), lambda: ["conn-b"], delay_s=0.01)
    sender.note("acct-1")
    await sender.flush()
    assert "hint for 1 accounts not sent" in caplog.text
    assert sender.sent == 0
