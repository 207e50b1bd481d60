"""The real `LeaseStore`: `leases/{account}` in Firestore, written by compare-and-set.

Each write applies the rule of connector/lease_record.py to the lease as this
store last read or wrote it and commits with that update_time as precondition
(one round trip for a renewal); on a conflict it reads the lease without a lock
and tries again (connector/adapters/firestore_cas.py). A transaction would lock
the lease, and a connector killed mid-transaction would keep a standby from
taking over until the lock expired. `renewed_at` is `SERVER_TIMESTAMP`; the
stored stamp comes back in the commit's transform results, so the returned
record is exactly what is stored (the emulator's server timestamp differs from
its commit time, so the commit time would not do). The Google client is
synchronous; calls run in worker threads.

Other adapters fence their writes on the lease with `firestore_cas.fenced_epoch`,
or, sharing this store's `LeaseVersions`, with `firestore_cas.LeaseFence` (no read).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore

from connector.adapters.firestore_cas import CONFLICTS, KnownLease, LeaseVersions, optimistic
from connector.adapters.firestore_halves import commit_in_halves
from connector.adapters.firestore_status import status_fields
from connector.lease_record import (
    MISSING_EPOCH,
    SERVER_NOW,
    LeaseError,
    LeaseRecord,
    LeaseView,
    acquire_fields,
    apply_write,
    check_id,
    check_ttl_ms,
    epoch_of,
    release_fields,
    renew_fields,
    to_micros,
)
from connector.ports import Shown, StatusUpdate, check_one_each
from connector.thread_pools import start_threads
from wa_wire.names import Collections

GET_ALL_BATCH = 300
"""Lease documents per batched read."""

MANY_BATCH = 200
"""Leases per commit of a `*_many` call: two writes each with the status they show, and
Firestore takes up to 500 writes per commit."""

Rule = Callable[[LeaseRecord | None], Mapping[str, Any] | None]


LEASE_THREADS = 16
"""Threads of each lease pool (acquisitions and releases; renewals)."""
T = TypeVar("T")


def _record(account: str, snapshot: Any) -> LeaseRecord | None:
    return LeaseRecord.from_fields(account, snapshot.to_dict() or {}) if snapshot.exists else None


def _version(known: KnownLease) -> str | None:
    """The update_time as a token (nanoseconds kept: the precondition compares them)."""
    return None if known.update_time is None else str(known.update_time.rfc3339())


def _showing(
    shown: Shown | None, holder: str, current: LeaseRecord | None, fields: Mapping[str, Any]
) -> StatusUpdate | None:
    """The status a lease write shows on the account, at the epoch the lease has after it."""
    if shown is None:
        return None
    epoch = fields.get("epoch", MISSING_EPOCH if current is None else current.epoch)
    return StatusUpdate(shown.status, shown.reason, int(epoch), holder, jid=None)


@dataclass(frozen=True)
class _Blind:
    """A write of a `*_many` call staged on the lease as this store last saw it."""

    account: str
    rule: Rule
    known: KnownLease
    fields: Mapping[str, Any]


class FirestoreLeaseStore:
    def __init__(self, client: firestore.Client, versions: LeaseVersions | None = None) -> None:
        self._db = client
        # Threads of their own: a renewal must never wait behind backups or status writes in
        # the default executor, nor behind the releases and acquisitions of a handoff of
        # hundreds of accounts, or the renew deadline passes and the lease is lost.
        self._executor = ThreadPoolExecutor(max_workers=LEASE_THREADS, thread_name_prefix="wa-leases")
        self._renewals = ThreadPoolExecutor(max_workers=LEASE_THREADS, thread_name_prefix="wa-lease-renewals")
        self.versions = versions if versions is not None else LeaseVersions()
        """What this store last read or wrote of each lease; fenced writers share it (bootstrap)."""
        self.reads = 0
        """Lease documents read (a renewal of an unchanged lease reads none)."""
        self.commits = 0
        """Commits tried, failed ones included (one per `*_many` call when nothing changed)."""

    async def _run(self, fn: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None) -> T:
        pool = self._executor if executor is None else executor
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))

    def start_threads(self) -> None:
        """Start every thread of both pools now (a daemon, at start-up: connector/thread_pools.py)."""
        start_threads(self._executor, LEASE_THREADS)
        start_threads(self._renewals, LEASE_THREADS)

    def _ref(self, account: str) -> firestore.DocumentReference:
        return self._db.collection(Collections.LEASES).document(check_id("account", account))

    def _read(self, account: str, snapshot: Any) -> tuple[LeaseView, KnownLease]:
        """A read lease, remembered with its update_time for the next write's precondition."""
        self.reads += 1
        known = KnownLease(_record(account, snapshot), snapshot.update_time if snapshot.exists else None)
        self.versions.put(account, known)
        return LeaseView(account, known.record, to_micros(snapshot.read_time), version=_version(known)), known

    def _get(self, account: str) -> LeaseView:
        return self._read(account, self._ref(account).get())[0]

    def _get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        found: dict[str, LeaseView] = {}
        for start in range(0, len(accounts), GET_ALL_BATCH):
            refs = [self._ref(a) for a in accounts[start : start + GET_ALL_BATCH]]
            for snapshot in self._db.get_all(refs):
                found[snapshot.id] = self._read(snapshot.id, snapshot)[0]
        return [found[a] for a in accounts]

    def _stage(
        self,
        batch: firestore.WriteBatch,
        account: str,
        fields: Mapping[str, Any],
        seen: KnownLease,
        shown: StatusUpdate | None,
    ) -> None:
        """The lease write first (its results carry the server time), then the status it shows."""
        ref = self._ref(account)
        stored = {k: firestore.SERVER_TIMESTAMP if v == SERVER_NOW else v for k, v in fields.items()}
        if seen.update_time is not None:
            batch.update(ref, stored, option=self._db.write_option(last_update_time=seen.update_time))
        else:
            batch.create(ref, stored)
        if shown is not None:
            account_ref = self._db.collection(Collections.ACCOUNTS).document(account)
            batch.set(account_ref, status_fields(shown), merge=True)

    def _written(
        self, account: str, current: LeaseRecord | None, fields: Mapping[str, Any], result: Any
    ) -> LeaseView:
        stamp: datetime = to_micros(result.transform_results[0].timestamp_value)
        record = apply_write(account, current, fields, stamp)
        known = KnownLease(record, result.update_time)
        self.versions.put(account, known)
        return LeaseView(account, record, stamp, written=True, version=_version(known))

    def _write(self, account: str, rule: Rule, shown: Shown | None = None, holder: str = "") -> LeaseView:
        """Apply `rule` by compare-and-set. First blind, on the lease as this store last saw it
        (one round trip: a renewal of an unchanged lease reads nothing); on a conflict, or when
        the rule would not write on that view, read it and apply the rule again."""

        def showing(current: LeaseRecord | None, fields: Mapping[str, Any]) -> StatusUpdate | None:
            return _showing(shown, holder, current, fields)

        known = self.versions.get(account)
        fields = None if known is None else rule(known.record)
        if known is not None and fields is not None:
            batch = self._db.batch()
            self._stage(batch, account, fields, known, showing(known.record, fields))
            try:
                self.commits += 1
                result = batch.commit()[0]  # the lease write comes first
            except CONFLICTS:
                self.versions.forget(account)
            else:
                return self._written(account, known.record, fields, result)
        seen: dict[str, Any] = {}

        def body(batch: firestore.WriteBatch) -> None:
            view, read = self._read(account, self._ref(account).get())
            fields = rule(view.record)
            seen.update(view=view, fields=fields)
            if fields is not None:
                self.commits += 1
                self._stage(batch, account, fields, read, showing(view.record, fields))

        _, results = optimistic(self._db, body)
        view: LeaseView = seen["view"]
        fields = seen["fields"]
        if fields is None:
            return view
        return self._written(account, view.record, fields, results[0])

    def _write_many(
        self, items: Sequence[tuple[str, Rule]], shown: Shown | None, holder: str
    ) -> list[LeaseView]:
        """Apply each account's rule as `_write` does, in as few commits as it can: one batch per
        `MANY_BATCH` accounts, each write on the lease as this store last saw it. A batch that
        meets a changed lease fails whole, so it is split in halves: k changed leases among n
        cost about k·log2(n) extra commits, not n. An account alone in a failing batch, or
        whose rule writes nothing on the lease as last seen, goes through `_write` (a read)."""
        accounts = [account for account, _ in items]
        check_one_each(accounts, LeaseError)
        views: dict[str, LeaseView] = {}
        one_by_one: list[tuple[str, Rule]] = []
        blind: list[_Blind] = []
        for account, rule in items:
            known = self.versions.get(account)
            fields = None if known is None else rule(known.record)
            if known is None or fields is None:
                one_by_one.append((account, rule))
            else:
                blind.append(_Blind(account, rule, known, fields))

        def stage(batch: firestore.WriteBatch, w: _Blind) -> bool:
            self._stage(
                batch, w.account, w.fields, w.known, _showing(shown, holder, w.known.record, w.fields)
            )
            return True

        def committed(w: _Blind, results: list[Any]) -> None:  # the lease write comes first
            views[w.account] = self._written(w.account, w.known.record, w.fields, results[0])

        def alone(w: _Blind) -> None:
            self.versions.forget(w.account)
            one_by_one.append((w.account, w.rule))

        for start in range(0, len(blind), MANY_BATCH):
            self.commits += commit_in_halves(
                self._db, blind[start : start + MANY_BATCH], stage, committed, alone
            )
        for account, rule in one_by_one:
            views[account] = self._write(account, rule, shown, holder)
        return [views[account] for account in accounts]

    def learn(self, views: Sequence[LeaseView]) -> None:
        for view in views:
            check_id("account", view.account)
            if view.record is None or view.version is None:
                continue
            try:
                update_time = DatetimeWithNanoseconds.from_rfc3339(view.version)
            except ValueError as exc:
                raise LeaseError(f"leases/{view.account}: version {view.version!r} is not a time") from exc
            self.versions.put(view.account, KnownLease(view.record, update_time))

    async def get(self, account: str) -> LeaseView:
        return await self._run(self._get, account)

    async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        for account in accounts:
            check_id("account", account)
        return await self._run(self._get_many, list(accounts))

    async def try_acquire(
        self, account: str, holder: str, ttl_ms: int, expected: LeaseRecord | None, shown: Shown | None = None
    ) -> LeaseView:
        check_id("holder", holder)
        check_ttl_ms(ttl_ms)
        return await self._run(
            self._write, account, lambda cur: acquire_fields(cur, expected, holder, ttl_ms), shown, holder
        )

    async def try_acquire_many(
        self,
        claims: Sequence[tuple[str, LeaseRecord | None]],
        holder: str,
        ttl_ms: int,
        shown: Shown | None = None,
    ) -> list[LeaseView]:
        check_id("holder", holder)
        check_ttl_ms(ttl_ms)
        items = [
            (
                check_id("account", account),
                functools.partial(acquire_fields, expected=expected, holder=holder, ttl_ms=ttl_ms),
            )
            for account, expected in claims
        ]
        return await self._run(self._write_many, items, shown, holder)

    async def renew(self, account: str, holder: str, epoch: int, ttl_ms: int) -> LeaseView:
        check_id("holder", holder)
        check_ttl_ms(ttl_ms)
        return await self._run(
            self._write,
            account,
            lambda cur: renew_fields(cur, holder, epoch, ttl_ms),
            executor=self._renewals,
        )

    async def release(self, account: str, holder: str, epoch: int, shown: Shown | None = None) -> LeaseView:
        check_id("holder", holder)
        return await self._run(
            self._write, account, lambda cur: release_fields(cur, holder, epoch), shown, holder
        )

    async def release_many(
        self, leases: Sequence[tuple[str, int]], holder: str, shown: Shown | None = None
    ) -> list[LeaseView]:
        check_id("holder", holder)
        items = [
            (check_id("account", account), functools.partial(release_fields, holder=holder, epoch=epoch))
            for account, epoch in leases
        ]
        return await self._run(self._write_many, items, shown, holder)

    def _current_epoch(self, account: str) -> int:
        snapshot = self._ref(account).get()
        return epoch_of(account, snapshot.to_dict() if snapshot.exists else None)

    async def current_epoch(self, account: str) -> int:
        return await self._run(self._current_epoch, account)
