"""What the vault's operations return, and its pure decisions (tested by tables).

Kept apart from connector/vault.py so the decisions read without the I/O around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.adapters.disk_sessions import DiskHealth, DiskState
from connector.ports import Manifest


class BackupStatus(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True)
class BackupRequest:
    """One backup of `backup_many`: the account's disk session, under lease `epoch`."""

    account: str
    jid: str | None
    epoch: int
    taken_while_connected: bool


@dataclass(frozen=True)
class BackupOutcome:
    status: BackupStatus
    generation: int | None = None
    reason: str = ""
    uploaded_bytes: int = 0
    """Encrypted bytes written to the store (0 unless WRITTEN)."""
    taken_at: datetime | None = None
    """When the generation that now holds the disk session was taken (WRITTEN or UNCHANGED)."""
    good: bool = False
    """That generation is good (taken while connected, or confirmed since)."""


@dataclass(frozen=True)
class RestoreOutcome:
    ok: bool
    generation: int | None
    failures: tuple[tuple[int, str], ...] = ()
    """(generation, why) of each generation tried and rejected, in order."""
    detail: str = ""
    jid: str | None = None
    """The jid of the session now on disk, when the restore succeeded."""


class EnsureAction(StrEnum):
    USED_DISK = "used_disk"
    RESTORED = "restored"
    SESSION_MISSING = "session_missing"
    RESTORE_FAILED = "restore_failed"


@dataclass(frozen=True)
class EnsureOutcome:
    action: EnsureAction
    disk: DiskHealth
    """The disk session as found, before any restore."""
    generation: int | None = None
    detail: str = ""
    jid: str | None = None
    """The jid of the session on disk now (used or restored); None: nothing usable."""


# -- pure decisions (tested by tables) ----------------------------------------------------


def disk_is_usable(health: DiskHealth, expected_jid: str | None) -> bool:
    """The disk session may be used as it is: healthy and, when a jid is known, that jid."""
    return health.state is DiskState.OK and (expected_jid is None or health.jid == expected_jid)


def disk_is_behind(newest_epoch: int | None, driven_epoch: int | None) -> bool:
    """A healthy disk copy is outdated when the newest generation was written under a later
    lease (`newest_epoch`; None: no generation) than the one this copy was last driven under:
    another host drove the account since (and handed it back with a final backup). Unknown
    epochs never make it outdated."""
    return newest_epoch is not None and driven_epoch is not None and newest_epoch > driven_epoch


def restore_candidates(manifests: list[Manifest], generation: int | None = None) -> list[Manifest]:
    """What to try, in order: the one asked for; else good generations newest first, then
    the others newest first (a session not yet confirmed beats a new QR scan)."""
    if generation is not None:
        return [m for m in manifests if m.generation == generation]
    newest_first = sorted(manifests, key=lambda m: m.generation, reverse=True)
    return [m for m in newest_first if m.good] + [m for m in newest_first if not m.good]


def is_unchanged(newest: Manifest | None, sha256: str) -> bool:
    return newest is not None and newest.sha256 == sha256
