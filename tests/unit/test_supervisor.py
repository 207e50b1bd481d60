"""The supervisor loop with fakes of its ports: actions are carried out, signals come back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from connector import account as a
from connector.account_machine import BEGIN_REASON
from connector.clock import SystemClock
from connector.ports import MemoryEventSink, NewestBackup, Shown, StatusUpdate
from connector.supervisor import Supervisor, SupervisorConfig, backoff_delay
from connector.vault_decisions import BackupRequest
from connector.workers import protocol as wp
from wa_wire import AccountStatus, CommandAction, EventType, LifecycleEvent

JID = "15550001111:7@s.whatsapp.net"


class FakeVault:
    def __init__(self) -> None:
        self.backups: list[tuple[str, bool]] = []
        self.final_groups: list[list[str]] = []  # the accounts of each `backup_many`
        self.ensure_failures = 0
        self.problem: str | None = None
        self.calls: list[str] = []
        self.prefetches: list[dict[str, int]] = []
        self.known: dict[str, dict[str, NewestBackup]] = {}  # by its first account: what a prefetch was told
        self.newest: dict[tuple[str, int], NewestBackup] = {}
        self.checked_ahead: list[str] = []
        self.prefetch_fails = False
        self.order: list[str] = []  # prefetches and ensures as they happened
        self.prefetch_gate = threading.Event()
        self.prefetch_gate.set()
        self.backup_gate = threading.Event()  # cleared: a backup hangs until it is set
        self.backup_gate.set()
        self.backup_started = threading.Event()

    def prefetch(self, held: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None) -> None:
        self.prefetches.append(dict(held))
        self.known[min(held)] = dict(known or {})
        self.order.append("prefetch " + ",".join(sorted(held)))
        self.prefetch_gate.wait(30)
        if self.prefetch_fails:
            raise OSError("firestore unreachable")

    def check_ahead(self, accounts: Sequence[str]) -> None:
        self.checked_ahead.extend(accounts)

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        return self.newest.get((account, epoch))

    def ensure(self, account: str, expected_jid: str | None, epoch: int) -> a.EnsureDone:
        self.calls.append("ensure")
        self.order.append(f"ensure {account}")
        if self.ensure_failures:
            self.ensure_failures -= 1
            raise OSError("firestore unreachable")
        self.problem = None
        return a.EnsureDone(jid=JID, generation=3)

    def backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None:
        self.backup_started.set()
        self.backup_gate.wait(30)
        self.backups.append((account, while_connected))

    def backup_many(self, requests: Sequence[BackupRequest]) -> list[Exception | None]:
        self.final_groups.append([r.account for r in requests])
        failed: list[Exception | None] = []
        for r in requests:
            try:
                self.backup(r.account, r.jid or "", r.epoch, r.taken_while_connected)
                failed.append(None)
            except Exception as exc:
                failed.append(exc)
        return failed

    def restore(self, account: str, epoch: int, generation: int | None) -> a.OperationDone:
        return a.OperationDone(ok=True, message="restored", jid=JID, generation=generation or 3)

    def wipe(self, account: str, epoch: int) -> a.OperationDone:
        return a.OperationDone(ok=True, message="wiped")

    def mark_good(self, account: str, generation: int) -> None:
        self.calls.append(f"good:{generation}")

    def disk_problem(self, account: str) -> str | None:
        return self.problem


class FakeWorkers:
    """In-process stand-in for worker processes: connects at once unless told otherwise."""

    def __init__(self, deliver: Callable[[str, a.Signal], None]) -> None:
        self.deliver = deliver
        self.running: set[str] = set()
        self.warmed = False
        self.starts = 0
        self.orders: list[wp.Message] = []
        self.start_holds: list[int] = []

    async def start(self, account: str, session_path: Path, hold_ms: int = 0) -> None:
        self.starts += 1
        self.start_holds.append(hold_ms)
        self.running.add(account)
        self.deliver(account, a.Report(wp.Loaded(account=account, jid=JID)))
        self.deliver(account, a.Report(wp.Connected(account=account)))

    async def send(self, account: str, order: wp.Message) -> None:
        self.orders.append(order)

    async def stop(self, account: str, kill: bool = False) -> None:
        if account in self.running:
            self.running.discard(account)
            self.deliver(account, a.Report(wp.Stopped(account=account)))

    def alive(self, account: str) -> bool:
        return account in self.running

    def kill_all(self) -> None:
        self.running.clear()

    async def warm(self) -> None:
        self.warmed = True

    async def close(self) -> None:
        self.running.clear()


class FakeStatus:
    def __init__(self) -> None:
        self.writes: list[StatusUpdate] = []

    async def write(self, account: str, update: StatusUpdate) -> None:
        self.writes.append(update)

    def last(self) -> AccountStatus | None:
        return self.writes[-1].status if self.writes else None


class FakeCommands:
    def __init__(self) -> None:
        self.finished: list[tuple[str, bool, str]] = []

    async def finish(self, command_id: str, ok: bool, message: str) -> None:
        self.finished.append((command_id, ok, message))


FAST = SupervisorConfig(
    machine=a.Config(backup_interval_s=0.05, stuck_connecting_s=5, stop_bound_s=1, reannounce_s=0.05),
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    backoff_jitter_s=0.01,
)


class Rig:
    def __init__(self, tmp_path: Path, config: SupervisorConfig = FAST) -> None:
        self.vault = FakeVault()
        self.status = FakeStatus()
        self.events = MemoryEventSink()
        self.commands = FakeCommands()
        self.workers: FakeWorkers | None = None

        def make_workers(deliver: Callable[[str, a.Signal], None]) -> FakeWorkers:
            self.workers = FakeWorkers(deliver)
            return self.workers

        self.sup = Supervisor(
            connector_id="conn-a",
            sessions_path=tmp_path,
            vault=self.vault,
            workers_factory=make_workers,
            status=self.status,
            events=self.events,
            commands=self.commands,
            clock=SystemClock(),
            config=config,
        )

    @property
    def w(self) -> FakeWorkers:
        assert self.workers is not None
        return self.workers

    def event_types(self) -> list[EventType]:
        return [e.type for e in self.events.events]


async def until(condition: Callable[[], bool], deadline_s: float = 60.0) -> None:
    """Wait for a condition, checking after each turn of the loop; fail at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


async def test_hold_runs_the_restore_order_then_connects(rig: Rig) -> None:
    rig.sup.hold("acct", epoch=2)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert rig.vault.calls[:2] == ["ensure", "good:3"]
    assert rig.event_types() == [EventType.CONNECTED]
    assert rig.events.events[0].lease_epoch == 2
    assert rig.status.writes[-1].holder == "conn-a"
    await until(lambda: len(rig.vault.backups) >= 2)  # periodic backups while connected
    await rig.sup.shutdown(within_s=5)


async def test_accounts_acquired_together_are_read_ahead_in_one_batch_before_their_ensures(
    rig: Rig,
) -> None:
    rig.vault.prefetch_gate.clear()
    for account in ("a", "b", "c"):
        rig.sup.hold(account, epoch=4)  # what the elector does for one acquisition batch
    await until(lambda: rig.vault.order == ["prefetch a,b,c"])
    await asyncio.sleep(0.1)
    assert rig.vault.order == ["prefetch a,b,c"]  # no ensure while the read ahead runs
    rig.vault.prefetch_gate.set()
    await until(lambda: sum(s.startswith("ensure") for s in rig.vault.order) == 3)
    assert rig.vault.prefetches == [{"a": 4, "b": 4, "c": 4}]
    assert rig.vault.order[0] == "prefetch a,b,c"  # every ensure waited for it
    rig.sup.hold("d", epoch=7)  # a later acquisition: a read of its own
    await until(lambda: "ensure d" in rig.vault.order)
    assert rig.vault.prefetches[-1] == {"d": 7}
    await rig.sup.shutdown(within_s=5)


async def test_a_read_ahead_before_the_lease_serves_the_acquisition_at_its_epoch_only(rig: Rig) -> None:
    rig.vault.prefetch_gate.clear()
    rig.sup.read_ahead({"a": 5, "b": 5})  # a clean release at 4 was hinted: read before taking
    await until(lambda: rig.vault.order == ["prefetch a,b"])
    rig.sup.hold("a", epoch=5)  # taken at the epoch read for: no read of its own
    rig.sup.hold("b", epoch=6)  # taken at another epoch (someone held it between): read again
    await until(lambda: len(rig.vault.order) == 2)
    await asyncio.sleep(0.1)
    assert rig.vault.order == ["prefetch a,b", "prefetch b"]  # no ensure while its read runs
    rig.vault.prefetch_gate.set()
    await until(lambda: sum(s.startswith("ensure") for s in rig.vault.order) == 2)
    assert rig.vault.prefetches == [{"a": 5, "b": 5}, {"b": 6}]
    rig.sup.read_ahead({"a": 6})  # held already: nothing to read ahead
    await asyncio.sleep(0.05)
    assert len(rig.vault.prefetches) == 2
    await rig.sup.shutdown(within_s=5)


async def test_a_read_ahead_goes_in_batches_side_by_side_and_checks_the_disk_copies(rig: Rig) -> None:
    accounts = {f"acct-{i:02d}": 5 for i in range(30)}
    rig.vault.prefetch_gate.clear()
    named = {"acct-03": NewestBackup(4, 2), "acct-25": NewestBackup(0, 0), "other": NewestBackup(1, 1)}
    rig.sup.read_ahead(accounts, named)
    await until(lambda: len(rig.vault.prefetches) == 2)  # both reads out at once
    assert sorted(sorted(p) for p in rig.vault.prefetches) == [sorted(accounts)[:20], sorted(accounts)[20:]]
    assert rig.vault.known == {
        "acct-00": {"acct-03": named["acct-03"]},
        "acct-20": {"acct-25": named["acct-25"]},
    }
    rig.vault.prefetch_gate.set()
    await until(lambda: len(rig.vault.checked_ahead) == 30)
    assert sorted(rig.vault.checked_ahead) == sorted(accounts)
    rig.sup.hold("acct-00", epoch=5)
    await until(lambda: "ensure acct-00" in rig.vault.order)
    rig.sup.read_ahead({"acct-00": 6, "acct-01": 5})  # held, or read already: nothing again
    await asyncio.sleep(0.05)
    assert len(rig.vault.checked_ahead) == 30
    await rig.sup.shutdown(within_s=5)


async def test_an_account_fenced_while_waiting_for_a_shared_read_ahead_leaves_the_others_theirs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.vault.prefetch_gate.clear()
    rig.sup.read_ahead({"a": 5, "b": 5})
    rig.sup.hold("a", epoch=5)
    rig.sup.hold("b", epoch=5)
    await until(lambda: rig.vault.order == ["prefetch a,b"])
    await asyncio.sleep(0.05)  # both ensures now wait for the one read
    await rig.sup.fence("a")  # lost: its wait is cancelled, the read it shared is not
    rig.vault.prefetch_gate.set()
    await until(lambda: rig.sup.snapshot().get("b", {}).get("status") == "connected")
    assert rig.vault.order == ["prefetch a,b", "ensure b"]
    assert "Error" not in caplog.text
    await rig.sup.shutdown(within_s=5)


async def test_a_failed_read_ahead_leaves_each_ensure_to_read_for_itself(rig: Rig) -> None:
    rig.vault.prefetch_fails = True
    rig.sup.hold("a", epoch=1)
    rig.sup.hold("b", epoch=1)
    await until(lambda: [v["status"] for v in rig.sup.snapshot().values()] == ["connected"] * 2)
    assert rig.vault.order[0] == "prefetch a,b"
    assert sorted(rig.vault.order[1:]) == ["ensure a", "ensure b"]
    await rig.sup.shutdown(within_s=5)


async def test_the_lease_deadline_reaches_the_worker_as_its_hold(rig: Rig) -> None:
    """Start carries what is left of the hold; every renewal after sends the worker a new one."""
    await rig.sup.extend_hold("acct", time.monotonic() + 10)  # not held yet: nothing remembered
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert rig.w.start_holds == [0]  # no renewal seen yet: the hold stays off
    await rig.sup.extend_hold("acct", time.monotonic() + 10)
    (hold,) = [o for o in rig.w.orders if isinstance(o, wp.Hold)]
    assert hold.account == "acct" and 0 < hold.for_ms <= 10_000
    rig.sup.deliver("acct", a.Report(wp.Disconnected(account="acct", reason="428")))
    await until(lambda: rig.w.starts == 2)
    assert 0 < rig.w.start_holds[1] <= 10_000
    await rig.sup.shutdown(within_s=5)


async def test_a_drop_restarts_the_worker_after_backoff(rig: Rig) -> None:
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    rig.sup.deliver("acct", a.Report(wp.Disconnected(account="acct", reason="428")))
    await until(lambda: rig.w.starts == 2 and rig.status.last() is AccountStatus.CONNECTED)
    assert EventType.DISCONNECTED in rig.event_types()
    await rig.sup.shutdown(within_s=5)


async def test_a_failing_vault_is_retried_with_backoff(rig: Rig) -> None:
    rig.vault.ensure_failures = 2
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert rig.vault.calls.count("ensure") == 3
    assert any("firestore unreachable" in w.reason for w in rig.status.writes)
    await rig.sup.shutdown(within_s=5)


async def test_logged_out_waits_for_the_control_plane_and_takes_no_backup(rig: Rig) -> None:
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    backups_before = len(rig.vault.backups)
    rig.sup.deliver("acct", a.Report(wp.LoggedOut(account="acct", reason_code=401, on_connect=True)))
    await until(lambda: rig.sup.views["acct"].state.phase is a.Phase.HALTED)
    assert rig.status.last() is AccountStatus.NEEDS_RESTORE
    assert not rig.w.alive("acct")
    assert len(rig.vault.backups) == backups_before
    rig.sup.deliver("acct", a.CommandReceived("cmd-1", CommandAction.RESTORE, generation=2))
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert rig.commands.finished == [("cmd-1", True, "restored")]
    await rig.sup.shutdown(within_s=5)


async def test_health_loop_restores_a_broken_disk_session(rig: Rig) -> None:
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    rig.vault.problem = "corrupt"
    await rig.sup.check_health()
    await until(lambda: rig.w.starts == 2 and rig.status.last() is AccountStatus.CONNECTED)
    assert rig.vault.calls.count("ensure") == 2
    assert any(w.status is AccountStatus.RESTORING for w in rig.status.writes)
    await rig.sup.shutdown(within_s=5)


async def test_release_takes_a_final_backup_and_stops_the_worker(rig: Rig) -> None:
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    before = len(rig.vault.backups)
    assert await rig.sup.release("acct", within_s=5)
    assert len(rig.vault.backups) == before + 1
    assert not rig.w.alive("acct")
    assert rig.sup.held() == []
    assert rig.status.last() is AccountStatus.UNATTENDED, "released: nobody drives it until the next holder"


async def test_final_backups_asked_for_while_one_runs_go_together(tmp_path: Path) -> None:
    """A shutdown releases every account at once: the final backups that queue behind the
    group in flight go to the vault in one call (one commit for the one-chunk uploads)."""
    rig = Rig(tmp_path, replace(FAST, final_backup_groups_at_once=1))
    accounts = [f"acct-{i}" for i in range(6)]
    for account in accounts:
        rig.sup.hold(account, epoch=1)
    await until(lambda: all(rig.sup.views[x].state.phase is a.Phase.CONNECTED for x in accounts))
    rig.vault.final_groups.clear()
    rig.vault.backup_gate.clear()  # the first final backup hangs: the rest queue behind it
    rig.vault.backup_started.clear()
    first = asyncio.create_task(rig.sup.release(accounts[0], within_s=30))
    await asyncio.to_thread(rig.vault.backup_started.wait, 30)
    rest = [asyncio.create_task(rig.sup.release(x, within_s=30)) for x in accounts[1:]]
    await until(lambda: rig.sup._final_backups.pending() == 5)
    rig.vault.backup_gate.set()
    assert all(await asyncio.gather(first, *rest))
    assert rig.vault.final_groups == [accounts[:1], accounts[1:]]
    assert sorted(rig.vault.backups[-6:]) == [(x, True) for x in accounts]


async def test_a_release_is_clean_only_once_a_backup_still_running_is_done(rig: Rig) -> None:
    """Not connected at the release, so no final backup: a periodic one still uploading could
    land after the lease is released, so the release is not clean until it is done."""
    for account in ("slow", "done"):
        rig.sup.hold(account, epoch=1)
    await until(lambda: [v["status"] for v in rig.sup.snapshot().values()] == ["connected"] * 2)
    rig.vault.backup_started.clear()
    rig.vault.backup_gate.clear()
    await until(rig.vault.backup_started.is_set)  # a periodic backup now hangs in its upload
    for account in ("slow", "done"):
        rig.sup.deliver(account, a.Report(wp.LoggedOut(account=account, reason_code=401)))
    await until(lambda: [v["status"] for v in rig.sup.snapshot().values()] != ["connected"] * 2)
    assert not await rig.sup.release("slow", within_s=0.2)
    rig.vault.backup_gate.set()
    assert await rig.sup.release("done", within_s=5)
    await rig.sup.shutdown(within_s=5)


async def test_halted_on_a_logout_the_same_event_is_published_again_until_a_command_comes(
    rig: Rig,
) -> None:
    """A lost delivery of the logout (the control plane never saw it) would leave the account
    waiting forever: the same event (same event_id: a duplicate is dropped) goes out again."""
    rig.sup.hold("acct", epoch=3)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    rig.sup.deliver("acct", a.Report(wp.LoggedOut(account="acct", reason_code=401)))

    def logouts() -> list[LifecycleEvent]:
        return [e for e in rig.events.events if e.type is EventType.LOGGED_OUT]

    await until(lambda: len(logouts()) >= 3)
    assert len({e.event_id for e in logouts()}) == 1
    assert rig.status.last() is AccountStatus.NEEDS_RESTORE
    rig.sup.deliver("acct", a.CommandReceived("cmd-1", CommandAction.RESTORE, generation=3))
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    published = len(logouts())
    await asyncio.sleep(0.2)  # several timer periods: nothing more once the command came
    assert len(logouts()) == published
    await rig.sup.shutdown(within_s=5)


async def test_a_release_whose_lease_release_shows_unattended_writes_no_status_itself(rig: Rig) -> None:
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert await rig.sup.release("acct", within_s=5, show_released=False)
    assert not rig.w.alive("acct")
    assert rig.status.last() is AccountStatus.CONNECTED, "the daemon's lease release shows unattended"


async def test_the_status_an_acquisition_showed_is_not_written_again(rig: Rig) -> None:
    shown = Shown(AccountStatus.CONNECTING, BEGIN_REASON)
    rig.sup.hold("acct", epoch=1, shown=shown)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert [w.status for w in rig.status.writes] == [AccountStatus.CONNECTED]
    rig.sup.hold("other", epoch=1, shown=Shown(AccountStatus.CONNECTING, "something else"))
    await until(lambda: len(rig.status.writes) == 3)
    assert [w.status for w in rig.status.writes[1:]] == [AccountStatus.CONNECTING, AccountStatus.CONNECTED]
    await rig.sup.shutdown(within_s=5)


async def test_the_supervisor_says_it_is_starting_accounts_until_their_sessions_are_ready(
    rig: Rig,
) -> None:
    """The outbox holds its drains back while `starting` (connector/outbox.py, `yield_to`)."""
    assert not rig.sup.starting()
    rig.vault.prefetch_gate.clear()
    rig.sup.hold("a", epoch=4)
    await until(lambda: rig.vault.order == ["prefetch a"])
    assert rig.sup.starting()  # waiting for its read ahead
    rig.vault.prefetch_gate.set()
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    assert not rig.sup.starting()
    rig.vault.prefetch_gate.clear()
    rig.sup.read_ahead({"b": 5})  # a hint: read before the lease is taken
    await until(lambda: "prefetch b" in rig.vault.order)
    assert rig.sup.starting()
    rig.vault.prefetch_gate.set()
    await until(lambda: not rig.sup.starting())
    await rig.sup.shutdown(within_s=5)


async def test_a_final_backup_does_not_wait_for_a_periodic_one_still_waiting_for_its_slot(
    tmp_path: Path,
) -> None:
    """At SIGTERM every account's periodic backup may be queued for the few periodic slots;
    the final backup covers it and has slots of its own, so the queued one is dropped."""
    rig = Rig(tmp_path, replace(FAST, max_parallel_backups=1))
    gate = threading.Event()
    real_backup = rig.vault.backup

    def backup(account: str, jid: str, epoch: int, while_connected: bool) -> None:
        if account == "busy":
            gate.wait(30)  # holds the only periodic slot
        real_backup(account, jid, epoch, while_connected)

    rig.vault.backup = backup  # type: ignore[method-assign]
    rig.sup.hold("busy", epoch=1)
    await until(lambda: rig.sup.views["busy"].state.phase is a.Phase.CONNECTED)
    await until(lambda: "busy" in rig.sup._uploading)
    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.sup.views["acct"].state.phase is a.Phase.CONNECTED)
    await until(lambda: "acct" in rig.sup._backup_tasks)  # its periodic backup waits for the slot
    assert await rig.sup.release("acct", within_s=5)
    assert rig.vault.backups == [("acct", True)]  # the final one, while "busy" still holds the slot
    gate.set()
    await rig.sup.shutdown(within_s=5)
    assert rig.vault.backups.count(("acct", True)) == 1


async def test_the_final_backup_is_taken_after_the_worker_stopped(rig: Rig) -> None:
    """The next holder restores the final backup: it must hold everything the session wrote,
    so the worker stops (and writes nothing more) before it is taken."""
    worker_alive: list[bool] = []
    real_backup = rig.vault.backup

    def backup(account: str, jid: str, epoch: int, while_connected: bool) -> None:
        worker_alive.append(rig.w.alive(account))
        real_backup(account, jid, epoch, while_connected)

    rig.sup.hold("acct", epoch=1)
    await until(lambda: rig.status.last() is AccountStatus.CONNECTED)
    rig.vault.backup = backup  # type: ignore[method-assign]
    assert await rig.sup.release("acct", within_s=30)
    assert worker_alive[-1] is False and rig.vault.backups[-1] == ("acct", True)
    assert rig.status.last() is AccountStatus.UNATTENDED


def test_backoff_grows_and_is_capped() -> None:
    config = SupervisorConfig(backoff_initial_s=1, backoff_max_s=30, backoff_jitter_s=0)
    delays = [backoff_delay(n, config) for n in range(1, 10)]
    assert delays[:5] == [1, 2, 4, 8, 16]
    assert max(delays) == 30
