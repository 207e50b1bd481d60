"""Disk sessions: checks, canonical snapshots, atomic installs, ENOSPC, SESSIONS_PATH checks."""

from __future__ import annotations

import contextlib
import errno
import io
import sqlite3
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import connector.adapters.disk_sessions as disk_module
from connector.adapters.disk_sessions import (
    Checked,
    DiskSessions,
    DiskState,
    SessionCheckError,
    SessionDiskError,
    check_account_id,
    check_bytes,
    sha256_hex,
)
from connector.adapters.sessions_volume import (
    CheckStatus,
    SessionsPathError,
    VolumeMarker,
    check_sessions_path,
    filesystem_of,
    prepare_sessions_path,
    raise_on_failure,
)
from connector.clock import FakeClock
from connector.errors import KeeperError
from connector.sessions.whatsmeow import delete_device
from tests.vault_support import JID, OTHER_JID, add_rows, change_one_row, make_session, template

ACCOUNT = "acct-disk"


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


@pytest.fixture
def disk(tmp_path: Path) -> DiskSessions:
    return DiskSessions(tmp_path / "sessions", FakeClock())


@pytest.fixture
def session(disk: DiskSessions, tmpl: Path) -> Path:
    path = disk.path(ACCOUNT)
    make_session(tmpl, path, rows=40)
    return path


def test_unchanged_session_snapshots_hash_equal_whatever_the_wal_state(
    disk: DiskSessions, session: Path
) -> None:
    writer = sqlite3.connect(session)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    add_rows(session, JID, 20, prefix="late")  # committed frames sit in the -wal file
    first = disk.snapshot(ACCOUNT, JID)
    second = disk.snapshot(ACCOUNT, JID)
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after_checkpoint = disk.snapshot(ACCOUNT, JID)
    writer.close()
    assert first.sha256 == second.sha256 == after_checkpoint.sha256
    assert first.data == after_checkpoint.data
    change_one_row(session)
    assert disk.snapshot(ACCOUNT, JID).sha256 != first.sha256


def test_snapshot_sees_committed_rows_still_in_the_wal(disk: DiskSessions, session: Path) -> None:
    writer = sqlite3.connect(session)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO whatsmeow_lid_map (lid, pn) VALUES ('1@lid', '2@s.whatsapp.net')")
    writer.commit()
    snap = disk.snapshot(ACCOUNT, JID)
    writer.close()
    db = sqlite3.connect(":memory:")
    image = bytearray(snap.data)
    image[18:20] = b"\x01\x01"
    db.deserialize(bytes(image))
    assert db.execute("SELECT pn FROM whatsmeow_lid_map").fetchall() == [("2@s.whatsapp.net",)]
    assert check_bytes(snap.data, JID, "snapshot") == JID


def test_a_snapshot_with_the_bytes_of_a_checked_one_is_not_checked_again(
    disk: DiskSessions, session: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bool] = []
    real_inspect = disk_module.inspect

    def counted(db: sqlite3.Connection, thorough: bool) -> object:
        checks.append(thorough)
        return real_inspect(db, thorough)

    monkeypatch.setattr(disk_module, "inspect", counted)
    first = disk.snapshot(ACCOUNT, JID)
    assert checks == [True]
    again = disk.snapshot(ACCOUNT, JID, Checked(first.sha256, JID))
    assert (again.sha256, again.jid, checks) == (first.sha256, JID, [True])  # no second check
    with pytest.raises(SessionCheckError) as wrong:  # the known jid is still held to the expected one
        disk.snapshot(ACCOUNT, OTHER_JID, Checked(first.sha256, JID))
    assert wrong.value.state == "wrong_jid"
    change_one_row(session)
    changed = disk.snapshot(ACCOUNT, JID, Checked(first.sha256, JID))
    assert changed.sha256 != first.sha256 and checks == [True, True]  # changed bytes: checked
    delete_device(session)
    with pytest.raises(SessionCheckError) as logged_out:  # and refused when they fail the check
        disk.snapshot(ACCOUNT, JID, Checked(first.sha256, JID))
    assert logged_out.value.state is DiskState.NO_DEVICE


def test_an_unchanged_file_with_no_journal_is_its_checked_snapshot_without_sqlite(
    disk: DiskSessions, session: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = disk.snapshot(ACCOUNT, JID)
    opened: list[str] = []
    real_connect = sqlite3.connect

    def counted(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(str(database))
        connection: sqlite3.Connection = real_connect(database, *args, **kwargs)
        return connection

    monkeypatch.setattr(sqlite3, "connect", counted)
    again = disk.snapshot(ACCOUNT, JID, Checked(first.sha256, JID))
    assert (again.data, again.sha256, opened) == (first.data, first.sha256, [])
    monkeypatch.undo()
    writer = sqlite3.connect(session)  # commits waiting in the WAL: the file alone is not the session
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    add_rows(session, JID, 5, prefix="wal")
    assert session.with_name(session.name + "-wal").exists()
    in_wal = disk.snapshot(ACCOUNT, JID, Checked(first.sha256, JID))
    assert in_wal.sha256 != first.sha256
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.close()
    assert disk.snapshot(ACCOUNT, JID, Checked(first.sha256, JID)).sha256 == in_wal.sha256


def test_snapshot_refusals(disk: DiskSessions, session: Path) -> None:
    with pytest.raises(SessionCheckError) as wrong:
        disk.snapshot(ACCOUNT, OTHER_JID)
    assert wrong.value.state == "wrong_jid"
    delete_device(session)
    with pytest.raises(SessionCheckError) as logged_out:
        disk.snapshot(ACCOUNT, JID)
    assert logged_out.value.state is DiskState.NO_DEVICE
    with pytest.raises(SessionCheckError) as missing:
        disk.snapshot("acct-none", None)
    assert missing.value.state is DiskState.MISSING


def corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096):  # every page after the first two
        data[offset + 10 : offset + 60] = b"\xff" * 50
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "state"),
    [
        (lambda p: p.unlink(), DiskState.MISSING),
        (lambda p: p.write_bytes(b"not a database at all" * 100), DiskState.CORRUPT),
        (lambda p: p.write_bytes(b""), DiskState.CORRUPT),
        (corrupt_middle, DiskState.CORRUPT),
        (delete_device, DiskState.NO_DEVICE),
        (lambda p: None, DiskState.OK),
    ],
    ids=["missing", "garbage", "empty", "damaged pages", "no device", "healthy"],
)
def test_check_states(disk: DiskSessions, session: Path, damage: object, state: DiskState) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(session) + suffix).unlink(missing_ok=True)
    damage(session)  # type: ignore[operator]
    health = disk.check(ACCOUNT, thorough=True)
    assert health.state is state, health.detail
    assert (health.jid == JID) == (state is DiskState.OK)


def test_install_replaces_atomically_and_keeps_the_old_file(
    disk: DiskSessions, session: Path, tmpl: Path
) -> None:
    other = session.parent.parent / "other" / "session.db"
    make_session(tmpl, other, jid=OTHER_JID)
    snap = DiskSessions(other.parent.parent, FakeClock()).snapshot("other", OTHER_JID)
    before = session.read_bytes()
    aside = disk.install(ACCOUNT, snap.data, snap.sha256)
    assert aside is not None and aside.name.startswith("session.db.previous-")
    assert aside.read_bytes() == before
    assert disk.check(ACCOUNT, thorough=True).jid == OTHER_JID
    with contextlib.closing(sqlite3.connect(session)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert not (session.parent / "session.db.restoring").exists()


def test_a_stray_wal_never_meets_the_new_file(disk: DiskSessions, session: Path) -> None:
    """A valid -wal left from a lost database would be replayed onto the new file."""
    snap = disk.snapshot(ACCOUNT, JID)
    wal = Path(str(session) + "-wal")
    with contextlib.closing(sqlite3.connect(session)) as writer:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("SELECT count(*) FROM whatsmeow_device").fetchone()  # holds the WAL open
        add_rows(session, JID, 30, prefix="stray")
        stray = wal.read_bytes()
    assert len(stray) > 30_000
    for suffix in ("", "-wal", "-shm"):
        Path(str(session) + suffix).unlink(missing_ok=True)
    wal.write_bytes(stray)
    disk.install(ACCOUNT, snap.data, snap.sha256)
    assert disk.snapshot(ACCOUNT, JID).sha256 == snap.sha256
    kept = [p for p in session.parent.iterdir() if p.name.endswith("-wal") and p.read_bytes() == stray]
    assert len(kept) == 1


def test_a_corrupt_file_is_kept_aside_never_deleted(disk: DiskSessions, session: Path) -> None:
    snap = disk.snapshot(ACCOUNT, JID)
    session.write_bytes(b"garbage" * 1000)
    aside = disk.install(ACCOUNT, snap.data, snap.sha256)
    assert aside is not None and aside.name.startswith("session.db.corrupt-")
    assert aside.read_bytes() == b"garbage" * 1000
    assert disk.check(ACCOUNT).state is DiskState.OK


def test_previous_files_are_pruned_but_corrupt_ones_stay(session: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    disk = DiskSessions(tmp_path / "sessions", clock)
    snap = disk.snapshot(ACCOUNT, JID)
    for _ in range(4):
        clock.advance(1)
        disk.install(ACCOUNT, snap.data, snap.sha256)
    clock.advance(1)
    disk.set_aside(ACCOUNT, "corrupt")
    names = sorted(p.name for p in session.parent.iterdir() if p.name.endswith("Z"))
    assert len([n for n in names if ".previous-" in n]) == 2
    assert len([n for n in names if ".corrupt-" in n]) == 1


class FullDisk(io.BytesIO):
    """A file whose writes fail with ENOSPC after `room` bytes."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: object) -> int:
        piece = bytes(data)  # type: ignore[call-overload]
        if self.tell() + len(piece) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(piece)

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "not a real file")


def test_enospc_while_installing_is_a_clear_error_and_the_old_session_stays(
    session: Path, tmp_path: Path
) -> None:
    def opener(path: Path) -> BinaryIO:
        path.write_bytes(b"partial")  # as a real full disk leaves a partial file behind
        return FullDisk(room=1024 * 1024)

    disk = DiskSessions(tmp_path / "sessions", FakeClock(), opener)
    snap = disk.snapshot(ACCOUNT, JID)
    add_rows(session, JID, 2000, prefix="more")  # the install below is bigger than the "disk"
    big = disk.snapshot(ACCOUNT, JID)
    change_one_row(session)
    before = session.read_bytes()
    with pytest.raises(SessionDiskError) as caught:
        disk.install(ACCOUNT, big.data, big.sha256)
    assert "No space left on device" in str(caught.value) and "\n" not in str(caught.value)
    assert session.read_bytes() == before
    assert disk.check(ACCOUNT, thorough=True).state is DiskState.OK
    assert not (session.parent / "session.db.restoring").exists()
    assert snap.sha256 != big.sha256


def test_install_refuses_bytes_that_do_not_read_back(disk: DiskSessions, session: Path) -> None:
    snap = disk.snapshot(ACCOUNT, JID)
    before = session.read_bytes()
    with pytest.raises(SessionDiskError, match="does not read back"):
        disk.install(ACCOUNT, snap.data, sha256_hex(b"something else"))
    assert session.read_bytes() == before


def test_leftover_temporary_file_is_cleared(disk: DiskSessions, session: Path) -> None:
    leftover = session.parent / "session.db.restoring"
    leftover.write_bytes(b"torn half of a restore")
    assert disk.clear_leftovers(ACCOUNT)
    assert not leftover.exists()
    assert not disk.clear_leftovers(ACCOUNT)


@pytest.mark.parametrize("account", ["", ".", "..", ".hidden", "a/b", "a\\b", "a\0b", "x" * 129, "__id__"])
def test_account_ids_that_cannot_be_folders_are_refused(account: str) -> None:
    with pytest.raises(KeeperError, match="cannot be a folder name"):
        check_account_id(account)


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
41 27 0:40 / /var/lib/wa\\040keeper rw,relatime shared:5 - xfs /dev/vdb rw
42 41 0:41 / /var/lib/wa\\040keeper/ram rw - ramfs ramfs rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/var/lib/wa keeper/sessions", ("/var/lib/wa keeper", "xfs")),
        ("/var/lib/wa keeper/ram/x", ("/var/lib/wa keeper/ram", "ramfs")),
        ("/var/lib/wa keeperx", ("/", "ext4")),
        ("/dev/shm/sessions", ("/dev/shm", "tmpfs")),
        ("/srv", ("/", "ext4")),
    ],
)
def test_filesystem_of(path: str, expected: tuple[str, str]) -> None:
    assert filesystem_of(Path(path), MOUNTINFO) == expected


@pytest.mark.parametrize(
    ("path", "require", "status"),
    [
        ("/dev/shm/s", False, CheckStatus.WARN),
        ("/dev/shm/s", True, CheckStatus.FAIL),
        ("/var/lib/wa keeper/ram/s", True, CheckStatus.FAIL),
        ("/var/lib/wa keeper/s", True, CheckStatus.PASS),
    ],
)
def test_persistence_policy(path: str, require: bool, status: CheckStatus, tmp_path: Path) -> None:
    from connector.adapters.sessions_volume import check_persistence  # noqa: PLC0415

    assert check_persistence(Path(path), require, MOUNTINFO).status is status


def test_sessions_path_checks_on_a_real_disk(tmp_path: Path) -> None:
    root = tmp_path / "new" / "sessions"
    checks = check_sessions_path(root, require_persistent=True)
    assert [c.name for c in checks] == ["exists", "writable", "fsync", "persistent"]
    assert "(created)" in checks[0].detail and root.is_dir()
    assert list(root.iterdir()) == []


def test_sessions_path_on_tmpfs_warns_or_fails_with_one_line() -> None:
    shm = Path("/dev/shm")
    assert filesystem_of(shm, Path("/proc/self/mountinfo").read_text())[1] == "tmpfs", (
        "this host has no tmpfs"
    )
    root = shm / "wa-keeper-vault-test"
    warned = check_sessions_path(root, require_persistent=False)
    assert warned[-1].status is CheckStatus.WARN and "tmpfs" in warned[-1].detail
    raise_on_failure(warned)
    failed = check_sessions_path(root, require_persistent=True)
    with pytest.raises(SessionsPathError) as caught:
        raise_on_failure(failed)
    assert "tmpfs" in str(caught.value) and "\n" not in str(caught.value)
    root.rmdir()


def test_prepare_at_start_logs_a_warning_or_raises_one_line(caplog: pytest.LogCaptureFixture) -> None:
    root = Path("/dev/shm") / "wa-keeper-vault-prepare"
    try:
        with caplog.at_level("WARNING"):
            checks = prepare_sessions_path(root, require_persistent=False)
        assert checks[-1].status is CheckStatus.WARN and "tmpfs" in caplog.text
        with pytest.raises(SessionsPathError, match=r"^SESSIONS_PATH persistent check failed: .*tmpfs"):
            prepare_sessions_path(root, require_persistent=True)
    finally:
        root.rmdir()


def test_unwritable_sessions_path_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    checks = check_sessions_path(blocker / "sessions", require_persistent=False)
    assert checks[0].status is CheckStatus.FAIL
    with pytest.raises(SessionsPathError, match="exists check failed"):
        raise_on_failure(checks)


def test_volume_marker_detects_a_wiped_volume(tmp_path: Path) -> None:
    marker = VolumeMarker(tmp_path / "sessions")
    volume_id, created = marker.ensure()
    assert created and marker.intact(volume_id)
    assert marker.ensure() == (volume_id, False)
    marker.path.unlink()
    assert not marker.intact(volume_id)
    new_id, created_again = marker.ensure()
    assert created_again and new_id != volume_id
