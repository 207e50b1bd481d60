"""Test helpers for the lease tests: a store wrapper that fails or hangs, a recording listener."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from connector.lease_record import LeaseRecord, LeaseView
from connector.ports import LeaseStore, Shown


class StoreDown(ConnectionError):
    """What a partitioned host sees from its store."""


class FlakyStore:
    """One host's path to a shared store: it can be cut (`down`) or made to hang (`gate`)."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.down = False
        self.gate: asyncio.Event | None = None
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def _enter(self, name: str, accounts: Sequence[str]) -> None:
        self.calls.append((name, tuple(accounts)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let other calls start: concurrency becomes visible
            if self.gate is not None:
                await self.gate.wait()
            if self.down:
                raise StoreDown("store unreachable")
        finally:
            self.in_flight -= 1

    async def get(self, account: str) -> LeaseView:
        await self._enter("get", [account])
        return await self.store.get(account)

    async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        await self._enter("get_many", accounts)
        return await self.store.get_many(accounts)

    def learn(self, views: Sequence[LeaseView]) -> None:
        self.calls.append(("learn", tuple(v.account for v in views)))
        self.store.learn(views)

    async def try_acquire(
        self, account: str, holder: str, ttl_ms: int, expected: LeaseRecord | None, shown: Shown | None = None
    ) -> LeaseView:
        await self._enter("try_acquire", [account])
        return await self.store.try_acquire(account, holder, ttl_ms, expected, shown)

    async def try_acquire_many(
        self,
        claims: Sequence[tuple[str, LeaseRecord | None]],
        holder: str,
        ttl_ms: int,
        shown: Shown | None = None,
    ) -> list[LeaseView]:
        await self._enter("try_acquire_many", [account for account, _ in claims])
        return await self.store.try_acquire_many(claims, holder, ttl_ms, shown)

    async def renew(self, account: str, holder: str, epoch: int, ttl_ms: int) -> LeaseView:
        await self._enter("renew", [account])
        return await self.store.renew(account, holder, epoch, ttl_ms)

    async def release(self, account: str, holder: str, epoch: int, shown: Shown | None = None) -> LeaseView:
        await self._enter("release", [account])
        return await self.store.release(account, holder, epoch, shown)

    async def release_many(
        self, leases: Sequence[tuple[str, int]], holder: str, shown: Shown | None = None
    ) -> list[LeaseView]:
        await self._enter("release_many", [account for account, _ in leases])
        return await self.store.release_many(leases, holder, shown)

    async def current_epoch(self, account: str) -> int:
        await self._enter("current_epoch", [account])
        return await self.store.current_epoch(account)


@dataclass
class Recorder:
    """A LeaseListener that writes down what it hears."""

    events: list[tuple[str, str, int]] = field(default_factory=list)
    holds: list[tuple[str, int, float]] = field(default_factory=list)

    def on_acquired(self, account: str, epoch: int) -> None:
        self.events.append(("acquired", account, epoch))

    def on_lost(self, account: str, epoch: int) -> None:
        self.events.append(("lost", account, epoch))

    def on_renew_deadline_missed(self, account: str, epoch: int) -> None:
        self.events.append(("deadline_missed", account, epoch))

    def on_held_until(self, account: str, epoch: int, until_mono: float) -> None:
        self.holds.append((account, epoch, until_mono))
