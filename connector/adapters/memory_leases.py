"""In-memory `LeaseStore` for tests, with the same rules as the Firestore one.

Documents are kept as field dicts (what Firestore would hold) and parsed on
every read, so a malformed document fails here the same way. The store's clock
plays the server: it stamps `renewed_at`, and like Firestore's commit times its
stamps only ever grow, even when the injected clock stands still.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from connector.clock import Clock, SystemClock
from connector.lease_record import (
    LeaseError,
    LeaseRecord,
    LeaseView,
    acquire_fields,
    apply_write,
    check_id,
    check_ttl_ms,
    epoch_of,
    fence,
    release_fields,
    renew_fields,
    to_micros,
)
from connector.ports import Shown, StatusUpdate, check_one_each

Rule = Callable[[LeaseRecord | None], Mapping[str, Any] | None]


def _check_once(accounts: list[str]) -> None:
    """A `*_many` call checks every id before it writes anything, as the Firestore store does."""
    for account in accounts:
        check_id("account", account)
    check_one_each(accounts, LeaseError)


class MemoryLeaseStore:
    def __init__(
        self, server_clock: Clock | None = None, shows: Callable[[str, StatusUpdate], None] | None = None
    ) -> None:
        self.server_clock: Clock = server_clock or SystemClock()
        self.docs: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.shown: list[tuple[str, StatusUpdate]] = []
        """Every status a lease write showed, in order (also passed to `shows`: a status fake)."""
        self._shows = shows
        self._last: datetime | None = None

    def server_now(self) -> datetime:
        now = to_micros(self.server_clock.now())
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now

    def _record(self, account: str) -> LeaseRecord | None:
        data = self.docs.get(account)
        return None if data is None else LeaseRecord.from_fields(account, data)

    def _view(self, account: str) -> LeaseView:
        return LeaseView(account, self._record(check_id("account", account)), self.server_now())

    def _write(self, account: str, rule: Rule, shown: Shown | None = None, holder: str = "") -> LeaseView:
        current = self._record(check_id("account", account))
        fields = rule(current)
        now = self.server_now()
        if fields is None:
            return LeaseView(account, current, now)
        record = apply_write(account, current, fields, now)
        self.docs[account] = record.to_fields()
        self.writes += 1
        if shown is not None:
            update = StatusUpdate(shown.status, shown.reason, record.epoch, holder, jid=None)
            self.shown.append((account, update))
            if self._shows is not None:
                self._shows(account, update)
        return LeaseView(account, record, now, written=True)

    def learn(self, views: Sequence[LeaseView]) -> None:
        """Nothing to remember: every write here compares the record itself."""
        for view in views:
            check_id("account", view.account)

    async def get(self, account: str) -> LeaseView:
        return self._view(account)

    async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        return [self._view(a) for a in accounts]

    async def try_acquire(
        self, account: str, holder: str, ttl_ms: int, expected: LeaseRecord | None, shown: Shown | None = None
    ) -> LeaseView:
        check_id("holder", holder)
        check_ttl_ms(ttl_ms)
        return self._write(account, lambda cur: acquire_fields(cur, expected, holder, ttl_ms), shown, holder)

    async def try_acquire_many(
        self,
        claims: Sequence[tuple[str, LeaseRecord | None]],
        holder: str,
        ttl_ms: int,
        shown: Shown | None = None,
    ) -> list[LeaseView]:
        check_id("holder", holder)
        check_ttl_ms(ttl_ms)
        _check_once([account for account, _ in claims])
        return [
            await self.try_acquire(account, holder, ttl_ms, expected, shown) for account, expected in claims
        ]

    async def renew(self, account: str, holder: str, epoch: int, ttl_ms: int) -> LeaseView:
        check_id("holder", holder)
        check_ttl_ms(ttl_ms)
        return self._write(account, lambda cur: renew_fields(cur, holder, epoch, ttl_ms))

    async def release(self, account: str, holder: str, epoch: int, shown: Shown | None = None) -> LeaseView:
        check_id("holder", holder)
        return self._write(account, lambda cur: release_fields(cur, holder, epoch), shown, holder)

    async def release_many(
        self, leases: Sequence[tuple[str, int]], holder: str, shown: Shown | None = None
    ) -> list[LeaseView]:
        check_id("holder", holder)
        _check_once([account for account, _ in leases])
        return [await self.release(account, holder, epoch, shown) for account, epoch in leases]

    async def current_epoch(self, account: str) -> int:
        return epoch_of(check_id("account", account), self.docs.get(account))

    def check_epoch(self, account: str, epoch: int) -> None:
        """The fencing check other fakes call where the real adapters read the lease in a transaction."""
        fence(account, epoch_of(check_id("account", account), self.docs.get(account)), epoch)
