"""The newest backup a releasing holder names in its clean-release hint: what the next
holder's vault then reads ahead (often nothing) and how `ensure_session` decides on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from connector.adapters.disk_sessions import DiskState
from connector.ports import Manifest, NewestBackup, NextCommit
from connector.vault import BackupRequest, BackupStatus, EnsureAction
from tests.vault_support import JID, CountingStore, change_one_row, make_session, make_vault, template


@pytest.fixture
def tmpl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory)


class Hosts:
    """Host A drove each account at epoch 1 and backed it up (generation 1); host B then held
    it at epoch 2, and wrote generation 2 for the accounts it `changed`."""

    def __init__(self, tmp_path: Path, tmpl: Path, accounts: list[str], changed: list[str]) -> None:
        self.store = CountingStore()
        self.a, _ = make_vault(tmp_path / "a", self.store)
        self.b, _ = make_vault(tmp_path / "b", self.store)
        self.root_a = tmp_path / "a"
        for account in accounts:
            make_session(tmpl, tmp_path / "a" / account / "session.db")
            assert self.a.ensure_session(account, JID, 1).action is EnsureAction.USED_DISK
            assert self.a.backup(account, JID, 1, True).generation == 1
            self.store.set_lease_epoch(account, 2)
            assert self.b.ensure_session(account, JID, 2).action is EnsureAction.RESTORED
            if account in changed:
                change_one_row(tmp_path / "b" / account / "session.db")
                assert self.b.backup(account, JID, 2, True).generation == 2
            self.store.set_lease_epoch(account, 3)  # released by B; A takes it back at 3
        self.store.calls.clear()


def test_the_releaser_names_the_newest_generation_of_its_hold(tmp_path: Path, tmpl: Path) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-1", "acct-2"], changed=["acct-1"])
    assert hosts.b.newest_known("acct-1", 2) == NewestBackup(2, 2)  # written in this hold
    assert hosts.b.newest_known("acct-2", 2) == NewestBackup(1, 1)  # read when the hold began
    assert hosts.b.newest_known("acct-1", 3) is None  # not our hold: unknown
    assert hosts.b.newest_known("acct-3", 2) is None
    assert hosts.store.calls == []  # no I/O


def test_an_account_without_backups_is_named_as_having_none(tmp_path: Path, tmpl: Path) -> None:
    vault, _ = make_vault(tmp_path, CountingStore())
    assert vault.ensure_session("acct-new", None, 1).action is EnsureAction.SESSION_MISSING
    assert vault.newest_known("acct-new", 1) == NewestBackup(0, 0)


def test_a_disk_copy_as_new_as_the_named_backup_is_used_with_no_read_at_all(
    tmp_path: Path, tmpl: Path
) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-2"], changed=[])
    assert hosts.a.prefetch_newest({"acct-2": 3}, {"acct-2": NewestBackup(1, 1)}) == 0
    outcome = hosts.a.ensure_session("acct-2", JID, 3)
    assert (outcome.action, outcome.jid) == (EnsureAction.USED_DISK, JID)
    assert hosts.store.calls == []
    assert hosts.a.backup("acct-2", JID, 3, True).status is BackupStatus.UNCHANGED
    assert hosts.store.calls == ["manifests"]  # the first backup reads the newest for itself


def test_a_disk_copy_behind_the_named_backup_is_restored_from_one_batched_read(
    tmp_path: Path, tmpl: Path
) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-1", "acct-2", "acct-3"], changed=["acct-1", "acct-3"])
    named = {"acct-1": NewestBackup(2, 2), "acct-2": NewestBackup(1, 1), "acct-3": NewestBackup(2, 2)}
    assert hosts.a.prefetch_newest({"acct-1": 3, "acct-2": 3, "acct-3": 3}, named) == 2
    assert hosts.store.calls == ["manifests_named"]  # no summary read: the names were given
    hosts.store.calls.clear()
    for account in ("acct-1", "acct-3"):
        back = hosts.a.ensure_session(account, JID, 3)
        assert (back.action, back.generation) == (EnsureAction.RESTORED, 2)
    assert hosts.a.ensure_session("acct-2", JID, 3).action is EnsureAction.USED_DISK
    assert hosts.store.calls == []


def test_accounts_without_a_name_are_read_as_before_beside_the_named_ones(tmp_path: Path, tmpl: Path) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-1", "acct-2"], changed=["acct-1", "acct-2"])
    assert hosts.a.prefetch_newest({"acct-1": 3, "acct-2": 3}, {"acct-1": NewestBackup(2, 2)}) == 2
    assert hosts.store.calls == ["manifests_named", "newest_many"]
    hosts.store.calls.clear()
    assert hosts.a.ensure_session("acct-2", JID, 3).generation == 2
    assert hosts.store.calls == []


@pytest.mark.parametrize(
    ("named", "case"),
    [
        (NewestBackup(5, 2), "a generation that does not exist"),
        (NewestBackup(1, 2), "the generation exists, written under another epoch than named"),
    ],
)
def test_a_named_generation_that_does_not_read_back_as_named_is_not_trusted(
    tmp_path: Path, tmpl: Path, named: NewestBackup, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-1"], changed=["acct-1"])
    assert hosts.a.prefetch_newest({"acct-1": 3}, {"acct-1": named}) == 0, case
    assert "named by its last holder, did not read back" in caplog.text
    hosts.store.calls.clear()
    back = hosts.a.ensure_session("acct-1", JID, 3)
    assert (back.action, back.generation) == (EnsureAction.RESTORED, 2), case  # read for itself
    assert hosts.store.calls == ["newest"]


def test_a_name_given_for_another_epoch_is_not_used(tmp_path: Path, tmpl: Path) -> None:
    """Taken at 4, not at 3: someone held it between the release and us, and may have written."""
    hosts = Hosts(tmp_path, tmpl, ["acct-1"], changed=["acct-1"])
    hosts.a.prefetch_newest({"acct-1": 3}, {"acct-1": NewestBackup(1, 1)})  # wrong on purpose
    hosts.store.set_lease_epoch("acct-1", 4)
    back = hosts.a.ensure_session("acct-1", JID, 4)
    assert (back.action, back.generation) == (EnsureAction.RESTORED, 2)
    assert hosts.store.calls == ["newest"]


def test_a_corrupt_disk_copy_is_restored_even_when_named_as_not_behind(tmp_path: Path, tmpl: Path) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-2"], changed=[])
    assert hosts.a.prefetch_newest({"acct-2": 3}, {"acct-2": NewestBackup(1, 1)}) == 0
    (hosts.root_a / "acct-2" / "session.db").write_bytes(b"garbage" * 100)
    back = hosts.a.ensure_session("acct-2", JID, 3)
    assert (back.action, back.disk.state, back.generation) == (EnsureAction.RESTORED, DiskState.CORRUPT, 1)


def test_a_missing_disk_copy_has_its_named_manifest_read_ahead(tmp_path: Path, tmpl: Path) -> None:
    hosts = Hosts(tmp_path, tmpl, ["acct-2"], changed=[])
    (hosts.root_a / "acct-2" / "session.db").unlink()
    assert hosts.a.prefetch_newest({"acct-2": 3}, {"acct-2": NewestBackup(1, 1)}) == 1
    hosts.store.calls.clear()
    back = hosts.a.ensure_session("acct-2", JID, 3)
    assert (back.action, back.generation) == (EnsureAction.RESTORED, 1)
    assert hosts.store.calls == []


def test_a_final_backup_soon_after_reads_the_newest_of_the_group_in_one_batch(
    tmp_path: Path, tmpl: Path
) -> None:
    """Taken over without reading any backup, then handed off again before the first periodic
    backup: the group's newest manifests come in one batched read, not one query each."""
    accounts = ["acct-1", "acct-2", "acct-3"]
    hosts = Hosts(tmp_path, tmpl, accounts, changed=[])
    hosts.a.prefetch_newest(dict.fromkeys(accounts, 3), dict.fromkeys(accounts, NewestBackup(1, 1)))
    for account in accounts:
        assert hosts.a.ensure_session(account, JID, 3).action is EnsureAction.USED_DISK
    assert hosts.store.calls == []
    change_one_row(hosts.root_a / "acct-3" / "session.db")
    outcomes = hosts.a.backup_many([BackupRequest(a, JID, 3, True) for a in accounts])
    assert [getattr(o, "status", o) for o in outcomes] == [BackupStatus.UNCHANGED] * 2 + [
        BackupStatus.WRITTEN
    ]
    assert hosts.store.calls == ["newest_many", "commit_next"]  # the memory store commits one by one
    assert hosts.a.newest_known("acct-3", 3) == NewestBackup(2, 3)
    assert hosts.a.newest_known("acct-1", 3) == NewestBackup(1, 1)


class CommitFails(CountingStore):
    def commit_next(self, account: str, epoch: int, build: Callable[[int], Manifest]) -> NextCommit:
        raise OSError("deadline exceeded: the commit may have landed")


def test_a_failed_upload_leaves_the_newest_unknown(tmp_path: Path, tmpl: Path) -> None:
    """A commit that failed may have landed all the same: naming the generation before it
    could make the next holder drive a disk copy behind it."""
    store = CommitFails()
    vault, _ = make_vault(tmp_path, store)
    make_session(tmpl, tmp_path / "acct-1" / "session.db")
    assert vault.ensure_session("acct-1", JID, 1).action is EnsureAction.USED_DISK
    assert vault.newest_known("acct-1", 1) == NewestBackup(0, 0)
    with pytest.raises(OSError, match="deadline exceeded"):
        vault.backup("acct-1", JID, 1, True)
    assert vault.newest_known("acct-1", 1) is None
