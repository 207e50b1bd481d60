"""The sweep's pure decisions, by table: retention, command expiry, unattended, dedupe pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy import BackupRef, PolicyConfig
from policy.housekeeping import (
    command_expired,
    generations_to_delete,
    lease_is_live,
    processed_cutoff,
    should_mark_unattended,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = PolicyConfig()


def refs(*gens: int, good: tuple[int, ...] = ()) -> tuple[BackupRef, ...]:
    return tuple(BackupRef(g, g in good) for g in gens)


@pytest.mark.parametrize(
    ("backups", "deleted"),
    [
        (refs(), []),
        (refs(1, 2, 3, 4, 5), []),
        (refs(1, 2, 3, 4, 5, 6, 7), [1, 2]),
        (refs(1, 2, 3, 4, 5, 6, 7, good=(6,)), [1, 2]),
        (refs(1, 2, 3, 4, 5, 6, 7, 8, 9, good=(2,)), [1, 3, 4]),  # newest good kept beyond the five
        (refs(1, 2, 3, 4, 5, 6, 7, 8, 9, good=(1, 2)), [1, 3, 4]),  # only the newest good one
        (refs(7, 3, 9, 1, 5, 8), [1]),  # unsorted input
    ],
)
def test_retention_keeps_the_newest_five_and_the_newest_good(
    backups: tuple[BackupRef, ...], deleted: list[int]
) -> None:
    assert generations_to_delete(backups, CFG) == deleted


def test_retention_count_comes_from_the_config() -> None:
    assert generations_to_delete(refs(1, 2, 3), PolicyConfig(keep_generations=1)) == [1, 2]


@pytest.mark.parametrize(
    ("status", "expires_at", "expired"),
    [
        ("pending", "2026-03-01T11:59:59.000000Z", True),
        ("pending", "2026-03-01T12:00:00.000000Z", True),
        ("pending", "2026-03-01T12:00:01.000000Z", False),
        ("claimed", "2026-03-01T11:00:00.000000Z", False),
        ("done", "2026-03-01T11:00:00.000000Z", False),
        ("pending", "not a time", True),
        ("pending", None, True),
    ],
)
def test_pending_commands_expire_after_expires_at(status: str, expires_at: object, expired: bool) -> None:
    assert command_expired(status, expires_at, NOW) is expired


@pytest.mark.parametrize(
    ("holder", "renewed_ago_s", "ttl_ms", "live"),
    [
        ("conn-a", 10, 15_000, True),
        ("conn-a", 44, 15_000, True),  # past the TTL, within the 30 s grace
        ("conn-a", 45, 15_000, False),
        (None, 1, 15_000, False),  # released
        ("", 1, 15_000, False),
        ("conn-a", 1, 0, False),
        ("conn-a", 1, "15000", False),
    ],
)
def test_a_lease_is_live_while_renewed_within_ttl_and_grace(
    holder: object, renewed_ago_s: int, ttl_ms: object, live: bool
) -> None:
    renewed = NOW - timedelta(seconds=renewed_ago_s)
    assert lease_is_live(holder, renewed, ttl_ms, NOW, CFG) is live


def test_a_lease_without_a_renewal_time_is_not_live() -> None:
    assert lease_is_live("conn-a", None, 15_000, NOW, CFG) is False


@pytest.mark.parametrize(
    ("status", "desired", "live", "mark"),
    [
        ("connected", "active", False, True),
        ("needs_qr", None, False, True),
        ("connected", "active", True, False),
        ("connected", "stopped", False, False),
        ("unattended", "active", False, False),
    ],
)
def test_unattended_marks_accounts_nobody_holds(status: str, desired: object, live: bool, mark: bool) -> None:
    assert should_mark_unattended(status, desired, live) is mark


def test_processed_events_are_kept_seven_days() -> None:
    assert processed_cutoff(NOW, CFG) == NOW - timedelta(days=7)
