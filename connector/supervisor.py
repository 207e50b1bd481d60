"""The supervisor: the thin asyncio loop that drives every held account's state machine.

Each account has a queue of signals and one task that feeds them to
`account_machine.step` and carries out the returned actions in order, so an
account never runs two things at once while accounts run side by side. Slow
work (vault restores and backups, which use sqlite3 and the sync Firestore
client) runs in threads. Timers are asyncio handles that push `TimerFired`.

The supervisor never imports neonize: workers are other processes (`Workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from tenacity import RetryCallState, wait_exponential_jitter

from connector import account as a
from connector.account_machine import RUNNING, step
from connector.clock import Clock
from connector.grouping import Grouped
from connector.metrics import ConnectorMetrics
from connector.ports import EventSink, NewestBackup, Shown, StatusUpdate, StatusWriter
from connector.tasks import cancel_and_wait
from connector.vault_decisions import BackupRequest
from connector.workers import protocol as wp
from wa_wire import AccountStatus, EventType, LifecycleEvent
from wa_wire.codec import parse_timestamp

log = logging.getLogger("wa_keeper.supervisor")

PREFETCH_BATCH = 1000
"""Accounts per batched read ahead (the store splits it into reads of its own size)."""

READ_AHEAD_BATCH = 20
"""Accounts per read of the newest backups ahead of a handoff (several such reads at once)."""

CHECK_AHEAD_BATCH = 8
"""Accounts per thread call when their disk copies are checked ahead of a takeover."""

DISK_CHECKED = frozenset({a.Phase.CONNECTING, a.Phase.CONNECTED})
"""Phases in which the disk session must be whole (not while starting or pairing)."""


class Vault(Protocol):
    """What the supervisor needs of the session vault (sync; run in threads)."""

    def ensure(self, account: str, expected_jid: str | None, epoch: int) -> a.EnsureDone: ...

    def prefetch(self, held: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None) -> None:
        """Read ahead, in one batch, what `ensure` of these just-acquired accounts {account:
        epoch} will need (`known`: the newest backups their last holder named); `ensure` reads
        for itself whatever this did not get."""
        ...

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        """The account's newest backup as known while holding it at `epoch` (no I/O)."""
        ...

    def check_ahead(self, accounts: Sequence[str]) -> None:
        """Check the disk copies of accounts about to be taken; `ensure` uses what still holds."""
        ...

    def backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None: ...

    def backup_many(self, requests: Sequence[BackupRequest]) -> list[Exception | None]:
        """`backup` of each (one per account) in as few writes as it can; per request None
        when done (written, unchanged or refused: the vault says why), else what failed it."""
        ...

    def restore(self, account: str, epoch: int, generation: int | None) -> a.OperationDone: ...

    def wipe(self, account: str, epoch: int) -> a.OperationDone: ...

    def mark_good(self, account: str, generation: int) -> None: ...

    def disk_problem(self, account: str) -> str | None:
        """None when the disk session is present and healthy, else what is wrong."""
        ...


class Workers(Protocol):
    """Worker processes; reports come back through the `deliver` callback given at start."""

    async def start(self, account: str, session_path: Path, hold_ms: int = 0) -> None:
        """Start the account's worker; `hold_ms` > 0 arms its hold (connector/workers/hold.py)."""
        ...

    async def send(self, account: str, order: wp.Message) -> None: ...

    async def stop(self, account: str, kill: bool = False) -> None: ...

    def alive(self, account: str) -> bool: ...

    def kill_all(self) -> None:
        """Kill every worker now (the second SIGTERM)."""
        ...

    async def warm(self) -> None:
        """Be ready to start accounts at once: a standby calls it at start, so a takeover does
        not wait for what the first start would set up (the shared worker process)."""
        ...

    async def close(self) -> None: ...


class CommandResults(Protocol):
    async def finish(self, command_id: str, ok: bool, message: str) -> None: ...


@dataclass(frozen=True)
class SupervisorConfig:
    machine: a.Config = field(default_factory=a.Config)
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_jitter_s: float = 1.0
    max_parallel_backups: int = 8
    """Periodic backups at once. Final backups (before a release) take none of these slots:
    they go to the vault in groups (`_final_backup`), so a handoff of every account at SIGTERM
    never queues behind periodic ones."""
    final_backups_per_group: int = 50
    final_backup_groups_at_once: int = 4
    """Final backups go to the vault in groups (the store commits the one-chunk ones of a
    group together), several groups at once, each snapshotting its sessions in a thread of
    its own: a handoff of hundreds of accounts is neither one long serial pass nor hundreds
    of commits."""
    max_parallel_starts: int = 16
    """At most this many accounts run the restore order at once: a restart of
    hundreds of accounts becomes a steady stream instead of a storm."""


def backoff_delay(attempt: int, config: SupervisorConfig) -> float:
    """Exponential backoff with jitter, capped (tenacity's wait strategy)."""
    wait = wait_exponential_jitter(
        multiplier=config.backoff_initial_s, max=config.backoff_max_s, jitter=config.backoff_jitter_s
    )
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    return float(wait(state))


@dataclass
class AccountView:
    """What /status shows of one account."""

    state: a.AccountState
    last_backup_at: datetime | None = None
    last_health: str = "not checked yet"
    connected_at: datetime | None = None
    worker_starts: int = 0  # since the lease was taken (metrics: later ones are restarts)
    connected_since_start: bool = False  # the next start is then a reconnect (metrics)
    shown: Shown | None = None  # what the lease acquisition already showed: not written again
    emitted: dict[EventType, LifecycleEvent] = field(default_factory=dict)  # the last of each type


class Supervisor:
    def __init__(
        self,
        *,
        connector_id: str,
        sessions_path: Path,
        vault: Vault,
        workers_factory: Callable[[Callable[[str, a.Signal], None]], Workers],
        status: StatusWriter,
        events: EventSink,
        commands: CommandResults,
        clock: Clock,
        config: SupervisorConfig,
        metrics: ConnectorMetrics | None = None,
    ) -> None:
        self.connector_id = connector_id
        self.metrics = metrics if metrics is not None else ConnectorMetrics()
        self.sessions_path = sessions_path
        self.vault = vault
        self.status = status
        self.events = events
        self.commands = commands
        self.clock = clock
        self.config = config
        self.workers = workers_factory(self.deliver)
        self.views: dict[str, AccountView] = {}
        self._queues: dict[str, asyncio.Queue[a.Signal]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[tuple[str, a.Timer], asyncio.TimerHandle] = {}
        self._starts = asyncio.Semaphore(config.max_parallel_starts)
        self._backups = asyncio.Semaphore(config.max_parallel_backups)
        self._final_backups: Grouped[str, BackupRequest, None] = Grouped(
            self._final_group, config.final_backups_per_group, config.final_backup_groups_at_once
        )
        self._backup_tasks: dict[str, asyncio.Task[None]] = {}
        self._uploading: set[str] = set()  # accounts whose backup has its slot and runs
        self._released: dict[str, asyncio.Event] = {}
        self._drive_until: dict[str, float] = {}  # monotonic: the lease's renew deadline per account
        self._prefetches: Grouped[str, int, None] = Grouped(self._prefetch_group, PREFETCH_BATCH)
        self._prefetched: dict[str, asyncio.Future[None]] = {}  # ensure waits for its account's read
        self._ahead: dict[str, tuple[int, asyncio.Future[None]]] = {}  # read before the lease is ours
        self._reading_ahead: set[asyncio.Task[None]] = set()
        self._ensuring = 0  # accounts between their read ahead and their worker's start

    # ---- feeding signals

    def deliver(self, account: str, signal: a.Signal) -> None:
        """Queue a signal for an account (from workers, timers, commands, health)."""
        queue = self._queues.get(account)
        if queue is not None:
            queue.put_nowait(signal)

    def hold(self, account: str, epoch: int, jid: str | None = None, shown: Shown | None = None) -> None:
        """Start driving an account (its lease is ours at `epoch`; the acquisition showed `shown`)."""
        self._prefetch(account, epoch)
        if account in self._tasks:
            self.views[account].shown = shown
            self.deliver(account, a.Begin(epoch=epoch))
            return
        self.views[account] = AccountView(a.AccountState(account_id=account, jid=jid), shown=shown)
        self._queues[account] = asyncio.Queue()
        self._released[account] = asyncio.Event()
        self._tasks[account] = asyncio.create_task(self._drive(account), name=f"account:{account}")
        self.deliver(account, a.Begin(epoch=epoch))

    def _prefetch(self, account: str, epoch: int) -> None:
        """Queue the account for the next batched read ahead of `ensure`: the accounts of one
        acquisition arrive together and share one read; those arriving while it runs, the next.
        An account already read ahead for this very epoch (`read_ahead`) uses that read."""
        ahead = self._ahead.pop(account, None)
        if ahead is not None and ahead[0] == epoch:
            self._prefetched[account] = ahead[1]
            return
        self._prefetched[account] = self._prefetches.submit(account, epoch)

    def read_ahead(self, epochs: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None) -> None:
        """Read the newest backups of accounts about to be taken, {account: the epoch they will
        be held at}, at once, while their leases are being read and taken, and check their
        disk copies meanwhile (`check_ahead`).

        Only for leases another connector released cleanly at epoch - 1 before we were told
        (a handoff hint): no write of that epoch can follow the release, and nobody else can
        write before we hold `epoch` (connector/vault.py, `prefetch_newest`). Taken at another
        epoch, or not at all, the read is not used. At most one read per account is kept.
        The reads go in batches of `READ_AHEAD_BATCH`, side by side: the starts of the first
        accounts of a large hint need not wait for the last ones' backups. `known`: the newest
        backups the releaser named (fewer reads, often none: `SessionVault.prefetch_newest`).
        """
        wanted = {
            acc: e
            for acc, e in epochs.items()
            if acc not in self._tasks and self._ahead.get(acc, (None,))[0] != e  # not read yet
        }
        accounts = sorted(wanted)
        tasks: list[asyncio.Task[None]] = []
        for i in range(0, len(accounts), READ_AHEAD_BATCH):
            batch = {account: wanted[account] for account in accounts[i : i + READ_AHEAD_BATCH]}
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for account, epoch in batch.items():
                self._ahead[account] = (epoch, done)
            named = {account: known[account] for account in batch if known and account in known}
            tasks.append(asyncio.create_task(self._read_ahead(batch, named, done)))
        for i in range(0, len(accounts), CHECK_AHEAD_BATCH):
            tasks.append(asyncio.create_task(self._check_ahead(accounts[i : i + CHECK_AHEAD_BATCH])))
        for task in tasks:
            self._reading_ahead.add(task)
            task.add_done_callback(self._reading_ahead.discard)

    async def _read_ahead(
        self, epochs: dict[str, int], known: dict[str, NewestBackup], done: asyncio.Future[None]
    ) -> None:
        try:
            await asyncio.to_thread(self.vault.prefetch, epochs, known)
        except Exception as exc:  # each ensure then reads for itself
            log.warning("reading ahead for %d accounts about to be taken failed: %s", len(epochs), exc)
        finally:
            if not done.done():
                done.set_result(None)

    async def _check_ahead(self, accounts: list[str]) -> None:
        """Disk checks ahead take start slots like the starts themselves (none run beside them)."""
        try:
            async with self._starts:
                await asyncio.to_thread(self.vault.check_ahead, accounts)
        except Exception as exc:  # each ensure then checks for itself
            log.warning("checking %d disk sessions ahead failed: %s", len(accounts), exc)

    async def _prefetch_group(self, items: list[tuple[str, int]]) -> list[None]:
        try:
            await asyncio.to_thread(self.vault.prefetch, dict(items))
        except Exception as exc:  # each ensure then reads for itself
            log.warning("reading ahead for %d accounts failed: %s", len(items), exc)
        return [None] * len(items)

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        """The account's newest backup as known while holding it at `epoch` (for a clean hint)."""
        return self.vault.newest_known(account, epoch)

    async def release(self, account: str, within_s: float, show_released: bool = True) -> bool:
        """Stop the worker, final backup when connected, status `unattended` (unless not
        `show_released`: the lease release shows it), forget the account.
        True only when all of that, and any backup of the account still running, finished
        within `within_s` (else the worker is killed, and a write of ours may still land)."""
        done = self._released.get(account)
        if done is None:
            return False
        started = self.clock.monotonic()
        self.deliver(account, a.StopRequested(show_released=show_released))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), within_s)
        clean = done.is_set()
        running = self._backup_tasks.get(account)
        if running is not None and not running.done():  # a periodic one (the final one is awaited)
            left = max(0.0, within_s - (self.clock.monotonic() - started))
            await asyncio.wait([running], timeout=left)
            clean = clean and running.done()
        await self._forget(account)
        return clean

    async def fence(self, account: str) -> None:
        """Stop the worker now and forget the account, writing nothing (the lease is not ours)."""
        await self._forget(account, kill=True)

    async def shutdown(self, within_s: float) -> None:
        await asyncio.gather(*(self.release(acc, within_s) for acc in list(self._tasks)))
        await self.workers.close()

    def kill_all(self) -> None:
        self.workers.kill_all()

    async def warm(self) -> None:
        """Get the workers ready before any account arrives (a failure here is only logged:
        the first start tries again)."""
        try:
            await self.workers.warm()
        except Exception as exc:
            log.warning("workers not warmed up ahead (the first start sets them up): %s", exc)

    def held(self) -> list[str]:
        return sorted(self._tasks)

    async def extend_hold(self, account: str, until_mono: float) -> None:
        """Let the account's worker keep its connection until `until_mono` (the lease's renew
        deadline) and tell a running worker so; it closes the socket by itself past that."""
        if account not in self._tasks:
            return
        self._drive_until[account] = until_mono
        view = self.views.get(account)
        hold_ms = self._hold_ms(account)
        live = view is not None and (view.state.phase in RUNNING or view.state.phase is a.Phase.STOPPING)
        if live and hold_ms > 0 and self.workers.alive(account):
            await self.workers.send(account, wp.Hold(account=account, for_ms=hold_ms))

    def _hold_ms(self, account: str) -> int:
        """Milliseconds left of the account's hold; 0 when none is known (the hold stays off)."""
        until = self._drive_until.get(account)
        if until is None:
            return 0
        return min(wp.MAX_HOLD_MS, max(1, int((until - self.clock.monotonic()) * 1000)))

    # ---- the per-account loop

    async def _drive(self, account: str) -> None:
        queue = self._queues[account]
        while True:
            signal = await queue.get()
            view = self.views[account]
            new_state, actions = step(view.state, signal, self.config.machine)
            view.state = new_state
            for action in actions:
                try:
                    await self._act(account, action)
                except Exception as exc:  # one account's failure never stops the others
                    log.exception("account %s: %s failed", account, type(action).__name__)
                    self._after_failure(account, action, exc)

    def _after_failure(self, account: str, action: a.Action, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(action, a.EnsureSession):
            self.deliver(account, a.EnsureDone(jid=None, error=text))
        elif isinstance(action, a.Restore | a.Wipe):
            self.deliver(account, a.OperationDone(ok=False, message=text))
        elif isinstance(action, a.StartWorker):
            self.deliver(account, a.WorkerExited(f"could not start the worker: {text}"))

    async def _act(self, account: str, action: a.Action) -> None:
        view = self.views[account]
        state = view.state
        match action:
            case a.EnsureSession():
                self.deliver(account, await self._ensure(account, state))
            case a.StartWorker():
                self._count_start(account, view)
                await self.workers.start(account, self.sessions_path / account, self._hold_ms(account))
            case a.StopWorker(kill=kill):
                await self.workers.stop(account, kill=kill)
            case a.SendOrder(order=order):
                message: wp.Message = (
                    wp.Pair(account=account) if order == "pair" else wp.Logout(account=account)
                )
                await self.workers.send(account, message)
            case a.Backup(while_connected=while_connected, final=final) if state.jid is not None:
                running = self._backup_tasks.get(account)
                if final:  # before a release: the newest state must be in the backup
                    if running is not None and account not in self._uploading:
                        running.cancel()  # still waiting for a slot: the final one covers it
                    if running is not None:
                        await asyncio.wait([running])
                    await self._final_backup(BackupRequest(account, state.jid, state.epoch, while_connected))
                elif running is None or running.done():  # else the running one covers it
                    self._backup_tasks[account] = asyncio.create_task(
                        self._backup(account, state.jid, state.epoch, while_connected)
                    )
            case a.MarkGood(generation=generation):
                await asyncio.to_thread(self.vault.mark_good, account, generation)
            case a.Restore(generation=generation):
                restored = await asyncio.to_thread(self.vault.restore, account, state.epoch, generation)
                self.deliver(account, restored)
            case a.Wipe():
                wiped = await asyncio.to_thread(self.vault.wipe, account, state.epoch)
                self.deliver(account, wiped)
            case a.Emit():
                view.emitted[action.type] = await self._emit(state, action)
            case a.Reannounce(type=kind):
                self._reannounce(view, kind)
            case a.SetStatus():
                await self._set_status(view, action)
            case a.Arm():
                self._arm(account, action)
            case a.Disarm(timer=timer):
                handle = self._timers.pop((account, timer), None)
                if handle is not None:
                    handle.cancel()
            case a.FinishCommand(command_id=cid, ok=ok, message=text):
                log.info("account %s: command %s %s: %s", account, cid, "done" if ok else "failed", text)
                await self.commands.finish(cid, ok, text)
            case a.Stopped():
                self._released[account].set()

    async def _ensure(self, account: str, state: a.AccountState) -> a.EnsureDone:
        prefetched = self._prefetched.pop(account, None)
        self._ensuring += 1
        try:
            if prefetched is not None:  # its batched read ahead (not holding a start slot meanwhile)
                await asyncio.wait([prefetched])  # shared: a cancelled wait must not cancel the read
            async with self._starts:
                return await asyncio.to_thread(self.vault.ensure, account, state.jid, state.epoch)
        finally:
            self._ensuring -= 1

    def starting(self) -> bool:
        """Whether accounts are being started: read ahead of a takeover, or their sessions
        made ready for the worker. What can wait (publishing events) waits for them."""
        return self._ensuring > 0 or bool(self._reading_ahead)

    def _reannounce(self, view: AccountView, kind: EventType) -> None:
        """The same event again (its event_id too: the control plane drops it if it had it)."""
        state = view.state
        event = view.emitted.get(kind)
        if event is not None and event.lease_epoch == state.epoch:
            log.info(
                "account %s: still %s: its %s event again", state.account_id, state.status.value, kind.value
            )
            self.events.emit(event)

    async def _emit(self, state: a.AccountState, emit: a.Emit) -> LifecycleEvent:
        code = "" if emit.reason_code is None else f" ({emit.reason_code})"
        log.info("account %s: event %s%s at epoch %d", state.account_id, emit.type.value, code, state.epoch)
        event = self._event(state, emit)
        await self.events.put(event)
        return event

    async def _set_status(self, view: AccountView, action: a.SetStatus) -> None:
        account = view.state.account_id
        log.info("account %s: %s: %s", account, action.status.value, action.reason)
        if action.status is AccountStatus.CONNECTED:
            view.connected_at = self.clock.now()
            view.connected_since_start = True
        shown, view.shown = view.shown, None
        if shown is not None and (shown.status, shown.reason, None) == (
            action.status,
            action.reason,
            action.qr,
        ):
            return  # the lease acquisition wrote this very status, at this epoch
        await self.status.write(account, self._status_update(view, action))

    async def _final_backup(self, request: BackupRequest) -> None:
        """With the other final backups asked for meanwhile (a handoff stops hundreds of
        accounts at once): their one-chunk uploads go out in one commit."""
        try:
            await self._final_backups.submit(request.account, request)
        except Exception:
            log.exception("account %s: final backup failed", request.account)
            return
        self._backed_up(request.account)

    async def _final_group(self, items: list[tuple[str, BackupRequest]]) -> list[Exception | None]:
        return await asyncio.to_thread(self.vault.backup_many, [request for _, request in items])

    async def _backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None:
        """One backup, off the account's signal loop: reports keep flowing meanwhile."""
        try:
            async with self._backups:
                self._uploading.add(account)
                try:
                    await asyncio.to_thread(self.vault.backup, account, jid, epoch, while_connected)
                finally:
                    self._uploading.discard(account)
        except Exception:
            log.exception("account %s: backup failed", account)
            return
        self._backed_up(account)

    def _backed_up(self, account: str) -> None:
        view = self.views.get(account)
        if view is not None:
            view.last_backup_at = self.clock.now()

    def _count_start(self, account: str, view: AccountView) -> None:
        """Every start after the first of this hold is a worker restart; one after a connection, a reconnect."""
        if view.worker_starts:
            self.metrics.worker_restarts.labels(account=account).inc()
        if view.connected_since_start:
            self.metrics.reconnects.labels(account=account).inc()
        view.worker_starts += 1
        view.connected_since_start = False

    def _event(self, state: a.AccountState, emit: a.Emit) -> LifecycleEvent:
        return LifecycleEvent.new(
            emit.type,
            account_id=state.account_id,
            connector_id=self.connector_id,
            lease_epoch=state.epoch,
            at=self.clock.now(),
            reason_code=emit.reason_code,
            detail=emit.detail,
            session_generation=emit.generation,
        )

    def _status_update(self, view: AccountView, action: a.SetStatus) -> StatusUpdate:
        return StatusUpdate(
            status=action.status,
            reason=action.reason,
            epoch=view.state.epoch,
            holder=self.connector_id,
            jid=view.state.jid,
            qr=action.qr,
            connected_at=view.connected_at if action.status is AccountStatus.CONNECTED else None,
        )

    def _arm(self, account: str, arm: a.Arm) -> None:
        if arm.until is not None:
            delay = max(0.0, (parse_timestamp(arm.until) - self.clock.now()).total_seconds())
        elif arm.attempt > 0:
            delay = backoff_delay(arm.attempt, self.config)
        else:
            delay = arm.seconds
        if arm.timer is a.Timer.RESTART and delay == 0:
            delay = random.uniform(0, 0.05)  # spreads simultaneous restarts
        old = self._timers.pop((account, arm.timer), None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[(account, arm.timer)] = loop.call_later(
            delay, self.deliver, account, a.TimerFired(arm.timer)
        )

    async def _forget(self, account: str, kill: bool = False) -> None:
        for key in [k for k in self._timers if k[0] == account]:
            self._timers.pop(key).cancel()
        task = self._tasks.pop(account, None)
        if task is not None:
            await cancel_and_wait(task)
        self._queues.pop(account, None)
        self._released.pop(account, None)
        self._backup_tasks.pop(account, None)
        self._drive_until.pop(account, None)
        self._prefetched.pop(account, None)
        view = self.views.pop(account, None)
        if view is not None and (kill or view.state.phase in RUNNING) and self.workers.alive(account):
            await self.workers.stop(account, kill=True)

    # ---- health

    async def check_health(self) -> None:
        """One pass of the health loop over every held account."""
        for account, view in list(self.views.items()):
            if view.state.phase not in RUNNING:
                view.last_health = f"{view.state.phase.value}: no worker expected"
                continue
            if not self.workers.alive(account):
                view.last_health = "worker not running"
                self.deliver(account, a.WorkerExited("the health check found no worker"))
                continue
            if view.state.jid is None or view.state.phase not in DISK_CHECKED:
                view.last_health = "worker alive; pairing (no session to check yet)"
                continue
            problem = await asyncio.to_thread(self.vault.disk_problem, account)
            if problem is not None:
                view.last_health = f"disk session {problem}"
                self.deliver(account, a.DiskUnhealthy(problem))
            else:
                view.last_health = "ok"

    def snapshot(self) -> dict[str, dict[str, object]]:
        """The /status view of every held account."""
        now = self.clock.now()
        out: dict[str, dict[str, object]] = {}
        for account, view in sorted(self.views.items()):
            s = view.state
            age = (
                None if view.last_backup_at is None else round((now - view.last_backup_at).total_seconds(), 1)
            )
            out[account] = {
                "status": s.status.value,
                "phase": s.phase.value,
                "epoch": s.epoch,
                "jid": s.jid,
                "attempt": s.attempt,
                "worker_alive": self.workers.alive(account),
                "backup_age_s": age,
                "health": view.last_health,
            }
        return out
