"""The vault's pure decisions, by table: which disk session to use, what to restore in which order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.adapters.disk_sessions import DiskHealth, DiskState
from connector.ports import Manifest
from connector.vault import disk_is_behind, disk_is_usable, is_unchanged, restore_candidates

JID, OTHER = "1555:7@s.whatsapp.net", "1666:2@s.whatsapp.net"


@pytest.mark.parametrize(
    ("state", "jid", "expected_jid", "usable"),
    [
        (DiskState.OK, JID, JID, True),
        (DiskState.OK, JID, None, True),
        (DiskState.OK, JID, OTHER, False),
        (DiskState.NO_DEVICE, None, JID, False),
        (DiskState.NO_DEVICE, None, None, False),
        (DiskState.CORRUPT, None, None, False),
        (DiskState.MISSING, None, JID, False),
    ],
)
def test_disk_is_usable(state: DiskState, jid: str | None, expected_jid: str | None, usable: bool) -> None:
    assert disk_is_usable(DiskHealth(state, jid), expected_jid) is usable


def m(generation: int, good: bool) -> Manifest:
    return Manifest(
        account_id="a",
        generation=generation,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        connector_id="c",
        lease_epoch=1,
        format=1,
        key_id="k",
        wrapped_key=b"",
        size=1,
        sha256=str(generation),
        chunk_count=1,
        taken_while_connected=good,
        good=good,
        jid=JID,
    )


@pytest.mark.parametrize(
    ("stored", "asked", "order"),
    [
        ([], None, []),
        ([(1, True)], None, [1]),
        ([(1, True), (2, True), (3, True)], None, [3, 2, 1]),
        ([(1, True), (2, False), (3, True)], None, [3, 1, 2]),
        ([(4, False), (2, False)], None, [4, 2]),
        ([(5, False), (4, True), (1, True)], None, [4, 1, 5]),
        ([(1, True), (2, True)], 1, [1]),
        ([(1, True), (2, False)], 2, [2]),
        ([(1, True)], 7, []),
    ],
)
def test_restore_candidates(stored: list[tuple[int, bool]], asked: int | None, order: list[int]) -> None:
    manifests = [m(g, good) for g, good in stored]
    assert [c.generation for c in restore_candidates(manifests, asked)] == order


@pytest.mark.parametrize(
    ("newest", "sha", "unchanged"),
    [(None, "1", False), (m(1, True), "1", True), (m(1, False), "1", True), (m(1, True), "2", False)],
)
def test_is_unchanged(newest: Manifest | None, sha: str, unchanged: bool) -> None:
    assert is_unchanged(newest, sha) is unchanged


@pytest.mark.parametrize(
    ("newest_good_epoch", "driven", "behind", "case"),
    [
        (None, 3, False, "no good generation: nothing to be behind"),
        (3, 3, False, "the same host restarts: its copy is at least as new as its own backups"),
        (2, 3, False, "backups from an earlier lease"),
        (4, 3, True, "another host drove it under a later lease and backed it up: restore that"),
        (4, None, False, "epoch never recorded (older install): judged by health alone"),
    ],
)
def test_disk_is_behind(newest_good_epoch: int | None, driven: int | None, behind: bool, case: str) -> None:
    assert disk_is_behind(newest_good_epoch, driven) is behind, case
