"""The lease loop: one `LeaseElector` acts on `connector.lease.decide` for all accounts.

Why one loop for many accounts: 200 accounts per connector must be cheap. Each
renewal is one compare-and-set on one lease document, run as a background task
(a bounded number at once); the reads of accounts we wait for go out in one
batch, the acquisitions a step decides in one call, and releases queue up behind
the one in flight and go out together (a handoff of hundreds of accounts is a
few commits, not hundreds). A hung call never delays the deadline check of any
account, its own included: the check is local arithmetic on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from connector.clock import Clock
from connector.grouping import Grouped
from connector.lease import Action, LeaseConfig, Local, decide
from connector.lease_record import LeaseError, LeaseView, check_id
from connector.metrics import ConnectorMetrics
from connector.ports import Shown

if TYPE_CHECKING:
    from connector.ports import LeaseStore

log = logging.getLogger(__name__)

BATCH = 100
"""Accounts per acquisition or release call."""


async def _until(done: asyncio.Future[LeaseView | None]) -> None:
    await asyncio.wait([done])


class LeaseListener(Protocol):
    """What the supervisor hooks into; called on the event loop, must not block."""

    def on_acquired(self, account: str, epoch: int) -> None:
        """The lease is ours at `epoch`: start the worker (restoring from the newest backup)."""
        ...

    def on_lost(self, account: str, epoch: int) -> None:
        """Another holder or epoch took over: stop the worker now, write nothing more."""
        ...

    def on_renew_deadline_missed(self, account: str, epoch: int) -> None:
        """No renewal within the deadline: stop the worker (close the socket) before others take over."""
        ...

    def on_held_until(self, account: str, epoch: int, until_mono: float) -> None:
        """After each acquire and renew: the lease is ours until `until_mono`, its renew deadline
        on this host's monotonic clock (the worker's hold, connector/workers/hold.py)."""
        ...


class LeaseElector:
    """One loop for all of a connector's leases: decide per account, then act.

    `set_claims` says which accounts to take (and after what head start), the
    listener hears what happened, `release` gives a lease up cleanly.
    """

    def __init__(
        self,
        *,
        store: LeaseStore,
        holder: str,
        config: LeaseConfig,
        clock: Clock,
        listener: LeaseListener,
        max_in_flight: int = 16,
        metrics: ConnectorMetrics | None = None,
        acquire_shows: Shown | None = None,
    ) -> None:
        """`acquire_shows`: the status each acquisition writes with the lease (every
        `on_acquired` then follows a write that showed it)."""
        self.holder = check_id("holder", holder)
        self.acquire_shows = acquire_shows
        self.store, self.config, self.clock, self.listener = store, config, clock, listener
        self.metrics = metrics if metrics is not None else ConnectorMetrics()
        self._local: dict[str, Local] = {}
        self._claims: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        # Renewals have slots of their own: in a takeover of hundreds of accounts, renewals of
        # the leases taken first must not wait behind the acquisitions still to come.
        self._renew_slots = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._look: set[str] = set()
        self._reads: set[asyncio.Task[None]] = set()  # the lease reads out now
        self._overtaken: dict[str, asyncio.Task[None]] = {}  # a read out, and a clean hint after it
        self._releases: Grouped[str, tuple[int, Shown | None], LeaseView | None] = Grouped(
            self._release_group, BATCH
        )

    # ---- what the supervisor asks and reads

    def set_claims(self, claims: Mapping[str, float]) -> None:
        """Accounts to take when free, each with its head start (connector/assignment.py)."""
        for account, delay in claims.items():
            check_id("account", account)
            if not delay >= 0:
                raise LeaseError(f"claim delay of {account} must be >= 0, got {delay!r}")
        self._claims = dict(claims)
        self._wake.set()

    def look(self, accounts: Iterable[str]) -> None:
        """Read these leases at the next step, whatever their polling schedule: a hint that they
        were just released (the account documents say `unattended`). Only wanted accounts we
        do not hold are read; what to do with the answer is still `decide`'s."""
        self._look.update(accounts)
        self._wake.set()

    def learn(self, views: Iterable[LeaseView]) -> None:
        """Leases as the connector that just released them wrote them (a handoff hint): taken as
        read, so a free one is acquired at the next step without reading it first. Only for
        wanted accounts we neither hold nor have an acquisition, renewal or release out for;
        the others are `look`ed at.

        A poll's read out for the account does not hold the hint up: that read may have been
        served before the release, so its answer for the account is dropped (the hint is at
        least as new), and the account is taken at the next step without waiting for it.
        """
        taken: list[LeaseView] = []
        others: list[LeaseView] = []
        for view in views:
            account = view.account
            call = self._in_flight.get(account)
            wanted = account in self._claims and (call is None or call in self._reads)
            (taken if wanted and self._local.get(account, Local()).held_epoch is None else others).append(
                view
            )
        self.store.learn(taken)
        for view in taken:
            read = self._in_flight.get(view.account)
            if read is not None:
                self._overtaken[view.account] = read
            self._observe(view.account, view)
        self.look(view.account for view in others)

    def claimed(self) -> set[str]:
        """The accounts `set_claims` last asked for."""
        return set(self._claims)

    def held(self) -> dict[str, int]:
        """Accounts we hold, with their epochs."""
        return {a: s.held_epoch for a, s in self._local.items() if s.held_epoch is not None}

    def known(self) -> dict[str, Local]:
        """Everything we know of the accounts we track (for /status and assignment)."""
        return dict(self._local)

    async def release(self, account: str, shown: Shown | None = None) -> LeaseView | None:
        """Give the lease up now (after the final backup); the released lease as stored when
        the store released it (and showed `shown` on the account with it), else None."""
        self._claims.pop(account, None)
        await self._settle(account)
        local = self._local.get(account)
        if local is None or local.held_epoch is None:
            return None
        self._local[account] = replace(local, held_epoch=None)
        released = self._releases.submit(account, (local.held_epoch, shown))
        self._spawn([account], _until(released))  # the loop leaves the account alone meanwhile
        await self._settle(account)
        if not released.done() or released.cancelled() or released.exception() is not None:
            return None
        return released.result()

    async def release_all(self) -> int:
        """SIGTERM: release every lease we hold; returns how many were released."""
        results = await asyncio.gather(*(self.release(a) for a in list(self.held())))
        return sum(view is not None for view in results)

    # ---- the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Decide and act until `stop` is set; calls still in flight are then cancelled."""
        try:
            while not stop.is_set():
                self._wake.clear()
                next_at = self.step()
                delay = min(max(next_at - self.clock.monotonic(), 0.0), self.config.retry_period_s)
                waits = [
                    asyncio.ensure_future(w)
                    for w in (self.clock.sleep(delay), self._wake.wait(), stop.wait())
                ]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
        finally:
            await self.close()

    def step(self) -> float:
        """One pass over every tracked account; returns when the next thing is due."""
        now, next_at, reads, acquires = self.clock.monotonic(), math.inf, [], []
        for account in sorted(set(self._claims) | set(self.held()) | set(self._in_flight)):
            local = self._local.get(account, Local())
            decision = decide(local, self.holder, self._claims.get(account), self.config, now)
            if self._busy(account):  # only the safety check while a call is out
                if decision.action is Action.DEADLINE_MISSED:
                    self._drop(account, Action.DEADLINE_MISSED)
                continue
            match decision.action:
                case Action.WAIT:
                    next_at = min(next_at, decision.at)
                case Action.READ:
                    reads.append(account)
                case Action.ACQUIRE:
                    acquires.append(account)
                case Action.RENEW:
                    self._spawn([account], self._renew(account))
                case Action.LOST | Action.DEADLINE_MISSED:
                    self._drop(account, decision.action)
                    next_at = now
        looks, self._look = self._look, set()
        for account in sorted(looks & set(self._claims)):
            if account in self._in_flight:  # a read sent before the release may answer "held":
                self._look.add(account)  # read it again once that call is back
            elif account not in reads and account not in acquires and account not in self.held():
                reads.append(account)  # (one being taken needs no read: it could answer after)
        if reads:
            self._reads.add(self._spawn(reads, self._read(reads)))
        for start in range(0, len(acquires), BATCH):
            chunk = acquires[start : start + BATCH]
            self._spawn(chunk, self._acquire(chunk))
        for account in set(self._local) - set(self._claims) - set(self.held()) - set(self._in_flight):
            del self._local[account]  # neither wanted nor held: forget it
        return next_at

    async def drain(self) -> None:
        """Wait for every store call in flight (tests, and shutdown)."""
        while self._in_flight:
            await asyncio.gather(*set(self._in_flight.values()), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the store calls in flight (a hung call must not hold up a shutdown)."""
        tasks = set(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await self._releases.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- acting

    def _busy(self, account: str) -> bool:
        """A call is out for the account, other than a read a clean hint overtook."""
        call = self._in_flight.get(account)
        return call is not None and self._overtaken.get(account) is not call

    def _spawn(self, accounts: list[str], call: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(call)
        for account in accounts:
            self._in_flight[account] = task

        def done(_: asyncio.Task[None]) -> None:
            self._reads.discard(task)
            for account in accounts:
                if self._in_flight.get(account) is task:
                    del self._in_flight[account]
                if self._overtaken.get(account) is task:
                    del self._overtaken[account]
            self._wake.set()

        task.add_done_callback(done)
        return task

    async def _settle(self, account: str) -> None:
        task = self._in_flight.get(account)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _renew(self, account: str) -> None:
        async with self._renew_slots:
            sent = self.clock.monotonic()
            local = self._local.get(account, Local())
            if local.held_epoch is None:
                return  # stopped holding it (deadline, release) while waiting for a slot
            try:
                view = await self.store.renew(account, self.holder, local.held_epoch, self.config.ttl_ms)
                self.metrics.lease_renew_seconds.observe(max(0.0, self.clock.monotonic() - sent))
            except Exception as exc:
                self._failed([account], Action.RENEW, sent, exc)
                return
        self._observe(account, view, Action.RENEW, sent)

    async def _acquire(self, accounts: list[str]) -> None:
        async with self._slots:
            sent = self.clock.monotonic()
            claims = []
            for account in accounts:
                view = self._local.get(account, Local()).view
                claims.append((account, None if view is None else view.record))
            try:
                views = await self.store.try_acquire_many(
                    claims, self.holder, self.config.ttl_ms, self.acquire_shows
                )
            except Exception as exc:
                self._failed(accounts, Action.ACQUIRE, sent, exc)
                return
        for view in views:
            self._observe(view.account, view, Action.ACQUIRE, sent)

    def _failed(self, accounts: list[str], action: Action, sent: float, exc: Exception) -> None:
        for account in accounts:
            local = self._local.get(account, Local())
            level = logging.WARNING if local.failed_mono is None else logging.DEBUG  # once per outage
            log.log(level, "lease %s of %s failed: %s", action.value, account, exc)
            self._local[account] = replace(local, failed_mono=sent)

    async def _release_group(
        self, items: list[tuple[str, tuple[int, Shown | None]]]
    ) -> list[LeaseView | None]:
        """Release what `release` queued meanwhile (`BATCH` at most): per account the lease as
        released, else None (a lease not released expires after its TTL)."""
        released: dict[str, LeaseView | None] = {}
        for shown in {item[1] for _, item in items}:
            group = [(account, epoch) for account, (epoch, s) in items if s == shown]
            try:
                views = await self.store.release_many(group, self.holder, shown)
            except Exception as exc:
                log.warning("%d leases not released (they expire after their TTL): %s", len(group), exc)
                released.update((account, None) for account, _ in group)
                continue
            for view, (account, _) in zip(views, group, strict=True):
                self._observe(account, view)
                released[account] = view if view.written else None
        return [released[account] for account, _ in items]

    async def _read(self, accounts: list[str]) -> None:
        async with self._slots:
            sent = self.clock.monotonic()
            try:
                views = await self.store.get_many(accounts)
            except Exception as exc:
                log.warning("reading %d leases failed: %s", len(accounts), exc)
                for account in accounts:
                    if self._overtaken.get(account) is not asyncio.current_task():
                        self._local[account] = replace(self._local.get(account, Local()), failed_mono=sent)
                return
        for view in views:
            if self._overtaken.get(view.account) is asyncio.current_task():
                continue  # a clean hint came after this read was sent: the hint stands
            self._observe(view.account, view)

    def _observe(
        self, account: str, view: LeaseView, action: Action = Action.READ, sent: float = 0.0
    ) -> None:
        now = self.clock.monotonic()
        old = self._local.get(account, Local())
        record = view.record
        stale = old.held_epoch is not None and (record is None or record.epoch < old.held_epoch)
        if action is Action.READ and stale:  # epochs only grow: served before our acquisition
            log.debug("lease of %s: ignored a read older than our epoch %s", account, old.held_epoch)
            return
        same = old.view is not None and old.view.record == view.record
        local = replace(
            old, view=view, read_mono=now, seen_mono=old.seen_mono if same else now, failed_mono=None
        )
        if view.written and record is not None and record.holder == self.holder:
            if action is Action.ACQUIRE and old.held_epoch is None:
                self._local[account] = replace(local, held_epoch=record.epoch, renewed_mono=sent)
                self._notify(self.listener.on_acquired, account, record.epoch)
                self._held_until(account, record.epoch, sent)
                return
            if action is Action.RENEW and old.held_epoch == record.epoch:
                local = replace(local, renewed_mono=sent)
                self._local[account] = local
                self._held_until(account, record.epoch, sent)
                return
        self._local[account] = local

    def _held_until(self, account: str, epoch: int, sent: float) -> None:
        try:
            self.listener.on_held_until(account, epoch, sent + self.config.renew_deadline_s)
        except Exception:
            log.exception("lease listener failed for %s", account)

    def _drop(self, account: str, why: Action) -> None:
        local = self._local.get(account, Local())
        epoch = local.held_epoch
        if epoch is None:
            return
        self._local[account] = replace(local, held_epoch=None)
        if why is Action.LOST:
            log.warning("lease of %s lost at epoch %d", account, epoch)
            self._notify(self.listener.on_lost, account, epoch)
        else:
            log.warning(
                "lease of %s not renewed within %s s: stopping it", account, self.config.renew_deadline_s
            )
            self._notify(self.listener.on_renew_deadline_missed, account, epoch)

    @staticmethod
    def _notify(hook: Callable[[str, int], None], account: str, epoch: int) -> None:
        try:
            hook(account, epoch)
        except Exception:
            log.exception("lease listener failed for %s", account)
