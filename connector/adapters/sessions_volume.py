"""SESSIONS_PATH itself: is it there, writable, durable, persistent, and still ours?

A session folder on tmpfs/ramfs vanishes with the host (a warning by default,
fatal with `--require-persistent`). The volume marker is a file with a random
id written when the connector starts; if it disappears or changes while the
connector runs, the disk was wiped or swapped under us (`disk_lost`).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from connector.adapters.disk_sessions import fsync_dir
from connector.errors import KeeperError

log = logging.getLogger(__name__)

MARKER_FILE = ".wa-keeper-volume"
VOLATILE_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTINFO = Path("/proc/self/mountinfo")


class CheckStatus(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class PathCheck:
    name: str
    status: CheckStatus
    detail: str


class SessionsPathError(KeeperError):
    """SESSIONS_PATH cannot be used; the message names the failed check."""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def filesystem_of(path: Path, mountinfo: str) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding `path` (the longest matching prefix)."""
    best = ("", "unknown")
    target = str(path)
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or not rest:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, rest[0])
    return best


def check_persistence(path: Path, require_persistent: bool, mountinfo: str | None = None) -> PathCheck:
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError as exc:
            return PathCheck("persistent", CheckStatus.WARN, f"cannot read {MOUNTINFO}: {exc.strerror}")
    point, fstype = filesystem_of(path.resolve(), mountinfo)
    if fstype in VOLATILE_FILESYSTEMS:
        status = CheckStatus.FAIL if require_persistent else CheckStatus.WARN
        return PathCheck("persistent", status, f"{path} is on {fstype} ({point}): sessions vanish on reboot")
    return PathCheck("persistent", CheckStatus.PASS, f"{fstype} mounted at {point}")


def check_sessions_path(
    path: Path, require_persistent: bool, mountinfo: str | None = None
) -> list[PathCheck]:
    """Every check of SESSIONS_PATH, in order; creates the folder when it is missing."""
    try:
        existed = path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [PathCheck("exists", CheckStatus.FAIL, f"cannot create {path}: {exc.strerror}")]
    checks = [PathCheck("exists", CheckStatus.PASS, f"{path}" + ("" if existed else " (created)"))]
    probe = path / f".wa-keeper-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as out:
            out.write(b"probe")
            out.flush()
            checks.append(PathCheck("writable", CheckStatus.PASS, "a file was written"))
            os.fsync(out.fileno())
        fsync_dir(path)
        checks.append(PathCheck("fsync", CheckStatus.PASS, "file and folder fsync work"))
    except OSError as exc:
        name = "fsync" if len(checks) > 1 else "writable"
        checks.append(PathCheck(name, CheckStatus.FAIL, f"{path}: {exc.strerror or exc}"))
    finally:
        probe.unlink(missing_ok=True)
    checks.append(check_persistence(path, require_persistent, mountinfo))
    return checks


def raise_on_failure(checks: list[PathCheck]) -> None:
    for check in checks:
        if check.status is CheckStatus.FAIL:
            raise SessionsPathError(f"SESSIONS_PATH {check.name} check failed: {check.detail}")


def prepare_sessions_path(path: Path, require_persistent: bool) -> list[PathCheck]:
    """At start (`run`): every check; a failure raises SessionsPathError, a warning is logged."""
    checks = check_sessions_path(path, require_persistent)
    raise_on_failure(checks)
    for check in checks:
        if check.status is CheckStatus.WARN:
            log.warning("SESSIONS_PATH %s: %s", check.name, check.detail)
    return checks


class VolumeMarker:
    """`SESSIONS_PATH/.wa-keeper-volume`: a random id that tells this volume apart from a new one."""

    def __init__(self, root: Path) -> None:
        self.path = root / MARKER_FILE

    def read(self) -> str | None:
        try:
            text = self.path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return text or None

    def ensure(self) -> tuple[str, bool]:
        """The volume id, writing a new marker (atomically) when there is none; (id, created)."""
        current = self.read()
        if current is not None:
            return current, False
        volume_id = str(uuid.uuid4())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(MARKER_FILE + ".new")
        with open(tmp, "w") as out:
            out.write(volume_id + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        return volume_id, True

    def intact(self, volume_id: str) -> bool:
        return self.read() == volume_id
