"""The command inbox survives a failing store: claims and listings are retried, nothing is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from google.api_core import exceptions as gexc

from connector.adapters.memory_commands import MemoryCommandStore
from connector.clock import FakeClock
from connector.inbox import CommandInbox
from connector.ports import PendingCommand
from wa_wire import Command, CommandAction, encode
from wa_wire.codec import utc_timestamp

RECONCILE_S = 600.0


class RoundsClock(FakeClock):
    """Short sleeps pass at once; the reconcile round's long sleep never ends (only retries run)."""

    async def sleep(self, seconds: float) -> None:
        if seconds >= RECONCILE_S:
            await asyncio.Event().wait()
        await super().sleep(seconds)


class FlakyStore(MemoryCommandStore):
    """The memory store, failing the first `claim_failures` claims and `pending_failures` listings."""

    def __init__(self, clock: FakeClock, claim_failures: int = 0, pending_failures: int = 0) -> None:
        super().__init__(clock)
        self.claim_failures, self.pending_failures = claim_failures, pending_failures
        self.claims = self.listings = 0
        self.asked: list[list[str]] = []

    def claim(self, command_id: str, connector_id: str, epoch: int) -> None:
        self.claims += 1
        if self.claim_failures:
            self.claim_failures -= 1
            raise gexc.Aborted("Transaction lock timeout")
        super().claim(command_id, connector_id, epoch)

    def pending(self, accounts: Sequence[str]) -> list[PendingCommand]:
        self.listings += 1
        self.asked.append(list(accounts))
        if self.pending_failures:
            self.pending_failures -= 1
            raise gexc.ServiceUnavailable("emulator restarting")
        return super().pending(accounts)


def add_command(store: MemoryCommandStore, clock: FakeClock, source: str, account: str = "acct-1") -> str:
    now = clock.now()
    cmd = Command(
        account_id=account,
        action=CommandAction.PAIR,
        params={},
        reason="test",
        issued_by="cli:test",
        source_event_id=source,
        issued_at=utc_timestamp(now),
        expires_at=utc_timestamp(now + timedelta(days=1)),
    )
    store.add(source, encode(cmd))
    return source


class Rig:
    def __init__(self, store: FlakyStore, clock: FakeClock) -> None:
        self.store, self.clock = store, clock
        self.held: dict[str, int] = {}
        self.delivered: list[str] = []
        self.unheld: list[str] = []
        self.inbox = CommandInbox(
            store=store,
            held=lambda: dict(self.held),
            deliver=lambda _acct, cid, _action, _gen: self.delivered.append(cid),
            clock=clock,
            connector_id="conn-a",
            reconcile_s=RECONCILE_S,
            on_unheld=self.unheld.append,
        )

    async def until_delivered(self, count: int) -> None:
        for _ in range(1000):
            if len(self.delivered) >= count:
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"delivered {self.delivered}, wanted {count}")


async def running(rig: Rig) -> asyncio.Task[None]:
    task = asyncio.create_task(rig.inbox.run())
    await asyncio.sleep(0)
    return task


async def holding_acct_1(claim_failures: int) -> tuple[Rig, asyncio.Task[None]]:
    """A running inbox holding acct-1 over a store whose first claims fail."""
    clock = RoundsClock()
    rig = Rig(FlakyStore(clock, claim_failures=claim_failures), clock)
    rig.held["acct-1"] = 0
    return rig, await running(rig)


async def test_a_claim_that_fails_is_tried_again_and_delivered_once() -> None:
    rig, task = await holding_acct_1(claim_failures=2)
    clock = rig.clock
    cid = add_command(rig.store, clock, "cmd-1")
    await rig.until_delivered(1)
    task.cancel()
    assert rig.delivered == [cid] and rig.store.claims == 3
    assert rig.store.docs[cid]["status"] == "claimed"


async def test_the_claim_loop_survives_a_failure_and_claims_the_next_command() -> None:
    rig, task = await holding_acct_1(claim_failures=1)
    clock = rig.clock
    first = add_command(rig.store, clock, "cmd-1")
    second = add_command(rig.store, clock, "cmd-2")
    await rig.until_delivered(2)
    task.cancel()
    assert sorted(rig.delivered) == sorted([first, second])


async def test_a_failed_listing_after_a_lease_is_tried_again() -> None:
    """The command came before the lease: only the listing on acquisition can find it."""
    clock = RoundsClock()
    rig = Rig(FlakyStore(clock, pending_failures=1), clock)
    task = await running(rig)
    cid = add_command(rig.store, clock, "cmd-1")  # heard, but not ours yet
    await asyncio.sleep(0.01)
    rig.held["acct-1"] = 0
    await rig.inbox.reconcile()
    await rig.until_delivered(1)
    task.cancel()
    assert rig.delivered == [cid] and rig.store.listings == 2


class StoppedClock(FakeClock):
    """No sleep ever ends: scheduled retries stay scheduled."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()


async def test_many_failed_listings_keep_one_retry_in_flight() -> None:
    clock = StoppedClock()
    rig = Rig(FlakyStore(clock, pending_failures=10), clock)
    rig.held["acct-1"] = 0
    rig.inbox._loop = asyncio.get_running_loop()
    for _ in range(5):
        await rig.inbox.reconcile()
    assert len(rig.inbox._retries) == 1
    for task in rig.inbox._retries:
        task.cancel()


async def test_a_command_for_an_account_not_held_asks_about_the_account() -> None:
    """The pairing of a brand-new account must not wait for the directory's next full refresh."""
    clock = RoundsClock()
    rig = Rig(FlakyStore(clock), clock)
    rig.held["acct-held"] = 1
    rig.store.lease_epochs["acct-held"] = 1
    task = await running(rig)
    add_command(rig.store, clock, "cmd-new", account="acct-new")
    add_command(rig.store, clock, "cmd-held", account="acct-held")
    await rig.until_delivered(1)
    assert rig.delivered == ["cmd-held"] and rig.unheld == ["acct-new"]
    rig.held["acct-new"] = 0  # placement took it: the listing on acquisition finds the command
    await rig.inbox.reconcile()
    await rig.until_delivered(2)
    task.cancel()
    assert rig.delivered == ["cmd-held", "cmd-new"] and rig.unheld == ["acct-new"]


async def test_leases_taken_together_are_looked_up_in_one_listing_of_just_those_accounts() -> None:
    """A takeover of many accounts: one listing for the batch, not a full listing per lease."""
    clock = RoundsClock()
    rig = Rig(FlakyStore(clock), clock)
    rig.held["acct-old"] = 1
    task = await running(rig)
    cid = add_command(rig.store, clock, "cmd-1", account="acct-7")
    await asyncio.sleep(0.01)
    assert rig.delivered == [] and rig.store.listings == 0
    for n in range(10):
        rig.held[f"acct-{n}"] = 1
        rig.store.lease_epochs[f"acct-{n}"] = 1
        rig.inbox.acquired(f"acct-{n}")
    rig.inbox.acquired("acct-gone")  # acquired, then lost again before the listing
    await rig.until_delivered(1)
    task.cancel()
    assert rig.delivered == [cid]
    assert rig.store.asked == [[f"acct-{n}" for n in range(10)]]
