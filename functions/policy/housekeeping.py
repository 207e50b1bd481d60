"""The sweep's pure decisions: retention, expiry, unattended accounts.

Each is a small function of plain values, tested by tables
(tests/unit/test_policy_housekeeping.py); control/sweep.py reads, calls, writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from policy.config import PolicyConfig
from policy.model import BackupRef
from wa_wire import AccountStatus, CommandStatus
from wa_wire.codec import parse_timestamp

STOPPED = "stopped"
"""`accounts/{id}.desired` of an account nobody should hold."""


def generations_to_delete(backups: tuple[BackupRef, ...], config: PolicyConfig) -> list[int]:
    """Retention: keep the newest `keep_generations` plus the newest good one; the rest go, oldest first."""
    newest_first = sorted({b.generation for b in backups}, reverse=True)
    keep = set(newest_first[: config.keep_generations])
    good = [b.generation for b in backups if b.good]
    if good:
        keep.add(max(good))
    return sorted(g for g in newest_first if g not in keep)


def command_expired(status: object, expires_at: object, now: datetime) -> bool:
    """A pending command past its `expires_at` (an unreadable expiry counts as expired: it can never run)."""
    if status != CommandStatus.PENDING.value:
        return False
    if not isinstance(expires_at, str):
        return True
    try:
        return parse_timestamp(expires_at) <= now
    except ValueError:
        return True


def lease_is_live(
    holder: object, renewed_at: object, ttl_ms: object, now: datetime, config: PolicyConfig
) -> bool:
    """Someone holds the lease and renewed it within its TTL (plus grace for clock skew)."""
    if not isinstance(holder, str) or not holder or not isinstance(renewed_at, datetime):
        return False
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        return False
    return renewed_at + timedelta(milliseconds=ttl_ms) + config.lease_grace > now


def should_mark_unattended(status: object, desired: object, lease_live: bool) -> bool:
    """An account that should run but that no connector holds; stopped ones are left alone."""
    return not lease_live and desired != STOPPED and status != AccountStatus.UNATTENDED.value


def processed_cutoff(now: datetime, config: PolicyConfig) -> datetime:
    """Dedupe records processed before this are pruned (redeliveries stop long before)."""
    return now - config.processed_events_ttl
