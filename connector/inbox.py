"""The command inbox: pending commands for the accounts this connector holds.

One Firestore query listener per connector (not per account: NOTES.md) feeds
`offer`; a reconciliation query every `reconcile_s` (10 s: one query per 30 held
accounts, nearly always empty) catches what the listener missed (the emulator's
was seen to miss commands under load), and a dead listener is recreated. Each
command is claimed atomically, fenced by the holder's lease epoch, before it
reaches the account's state machine, so it runs at most once, on the holder only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from connector.clock import Clock
from connector.errors import KeeperError
from connector.ports import CommandStore, PendingCommand
from wa_wire import CommandAction
from wa_wire.codec import parse_timestamp

log = logging.getLogger("wa_keeper.inbox")


class ClaimRefused(KeeperError):
    """A command could not be claimed (not pending any more, expired, stale epoch)."""


def claimable(command: PendingCommand, held: dict[str, int], now: datetime, seen: set[str]) -> bool:
    """Whether this connector should try to claim the command (the claim re-checks in a transaction)."""
    if command.command_id in seen or command.account_id not in held:
        return False
    return parse_timestamp(command.expires_at) > now


class CommandInbox:
    def __init__(
        self,
        *,
        store: CommandStore,
        held: Callable[[], dict[str, int]],
        deliver: Callable[[str, str, CommandAction, int | None], None],
        clock: Clock,
        connector_id: str,
        reconcile_s: float = 10.0,
        retry_s: float = 2.0,
        gather_s: float = 0.5,
        on_unheld: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._held = held
        self._deliver = deliver
        self._clock = clock
        self._connector_id = connector_id
        self._reconcile_s = reconcile_s
        self._retry_s = retry_s
        self._on_unheld = on_unheld
        self._retries: set[asyncio.Task[None]] = set()
        self._reconcile_retry_due = False
        self._gather_s = gather_s
        self._acquired: set[str] = set()  # leases taken since the last query for them
        self._seen: set[str] = set()
        self._queue: asyncio.Queue[PendingCommand] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def offer(self, command: PendingCommand) -> None:
        """Thread-safe: the listener calls this from its own thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, command)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._store.listen(self.offer)
        claimer = asyncio.create_task(self._claim_loop())
        try:
            while True:
                await self._clock.sleep(self._reconcile_s)
                if not self._store.listening():
                    log.warning("command listener stopped; recreating it")
                    with contextlib.suppress(Exception):  # the next round tries again
                        self._store.listen(self.offer)
                await self.reconcile()
        finally:
            claimer.cancel()
            for task in self._retries:
                task.cancel()
            self._store.stop_listening()

    def listening(self) -> bool:
        return self._store.listening()

    def acquired(self, account: str) -> None:
        """A lease was just taken: look up the account's pending commands (issued before we
        held it) within `gather_s`, in one query with every account taken meanwhile. A
        takeover of 200 accounts is then a few queries, not a full reconciliation each."""
        first = not self._acquired
        self._acquired.add(account)
        if first:
            self._later(self._reconcile_acquired, self._gather_s)

    async def _reconcile_acquired(self) -> None:
        accounts, self._acquired = self._acquired, set()
        await self.reconcile(accounts)

    async def reconcile(self, accounts: Iterable[str] | None = None) -> None:
        """Query pending commands of held accounts (what a listener may have missed);
        `accounts` narrows it to some of them.

        A failed query is tried again after `retry_s` (for every held account): this
        runs when a lease is acquired, and a command issued before that must not wait
        a whole round.
        """
        held = self._held()
        accounts = sorted(held if accounts is None else set(accounts) & set(held))
        if not accounts:
            return
        try:
            found = await asyncio.to_thread(self._store.pending, accounts)
        except Exception as exc:
            log.warning("listing pending commands failed (%s: %s); trying again", type(exc).__name__, exc)
            if not self._reconcile_retry_due:  # one retry in flight is enough, however many leases came
                self._reconcile_retry_due = True
                self._later(self._reconcile_again)
            return
        for command in found:
            self._queue.put_nowait(command)

    async def _claim_loop(self) -> None:
        """Claims one command at a time; a failed claim is offered again later, never dropped."""
        while True:
            command = await self._queue.get()
            try:
                await self.consider(command)
            except Exception as exc:  # Firestore down or contended: the loop must survive it
                log.warning(
                    "claiming command %s failed (%s: %s); trying again in %.0f s",
                    command.command_id,
                    type(exc).__name__,
                    exc,
                    self._retry_s,
                )
                self._later(functools.partial(self._offer_again, command))

    async def _offer_again(self, command: PendingCommand) -> None:
        self._queue.put_nowait(command)

    async def _reconcile_again(self) -> None:
        self._reconcile_retry_due = False
        await self.reconcile()

    def _later(self, work: Callable[[], Awaitable[None]], delay_s: float | None = None) -> None:
        """Run `work` after `delay_s` (default `retry_s`), in a task this inbox keeps (and
        cancels when it stops)."""

        async def again() -> None:
            await self._clock.sleep(self._retry_s if delay_s is None else delay_s)
            await work()

        task = asyncio.create_task(again())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def consider(self, command: PendingCommand) -> bool:
        held = self._held()
        if not claimable(command, held, self._clock.now(), self._seen):
            if command.account_id not in held and command.command_id not in self._seen:
                self._seen_unheld(command)
            return False
        epoch = held[command.account_id]
        try:
            await asyncio.to_thread(self._store.claim, command.command_id, self._connector_id, epoch)
        except ClaimRefused as exc:
            log.info("command %s not claimed: %s", command.command_id, exc)
            self._seen.add(command.command_id)
            return False
        self._seen.add(command.command_id)
        self._deliver(command.account_id, command.command_id, command.action, command.generation)
        return True

    def _seen_unheld(self, command: PendingCommand) -> None:
        """A command for an account nobody here holds: maybe one placement has not seen yet
        (a new account; a listener that missed it). The callback checks; the claim follows
        by `reconcile` once the lease is ours."""
        if self._on_unheld is not None:
            try:
                self._on_unheld(command.account_id)
            except Exception:
                log.exception(
                    "checking account %s of command %s failed", command.account_id, command.command_id
                )

    async def finish(self, command_id: str, ok: bool, message: str) -> None:
        await asyncio.to_thread(self._store.finish, command_id, self._connector_id, ok, message)
