"""The durable event outbox: every lifecycle event is stored locally, then published.

`emit` is a local SQLite insert (never network; `put`, its form for the event loop,
stores off the loop and with the events put meanwhile, in one commit), so a connector
that cannot reach Pub/Sub loses nothing: rows stay until Pub/Sub acknowledges them, across restarts
(a new `Outbox` on the same file sends what is left). Delivery is at least once;
a row acknowledged but not yet deleted when the process dies is sent again with
the same `event_id`, on which consumers deduplicate.

Order per account: each drain sends the oldest rows of the accounts that are not
backing off; a failure blocks only that account (its later rows wait behind the
failed one) for an exponential, jittered, capped delay. Drains are paced in a burst
and held back (at most `DEFAULT_YIELD_S`) while the connector starts or hands off
accounts. The decisions of what to send and when are pure (`blocked_accounts`,
`after_attempt`, `idle_delay`, `pace_delay`, `yield_delay`); `Outbox` acts.
The outbox is bounded: when full, `emit` raises `OutboxFullError` (and counts
it) instead of dropping anything silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity

from connector.clock import Clock
from connector.grouping import Grouped
from connector.metrics import ConnectorMetrics
from connector.outbox_store import OutboxClosedError, OutboxError, OutboxFullError, OutboxStore, StoredEvent
from connector.ports import EventMessage, EventPublisher, PublishOutcome
from wa_wire import LifecycleEvent

__all__ = [
    "Backoff",
    "DrainReport",
    "Outbox",
    "OutboxClosedError",
    "OutboxError",
    "OutboxFullError",
    "OutboxStats",
    "RetryPolicy",
    "default_outbox_path",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 100_000
DEFAULT_BATCH_SIZE = 500
DEFAULT_PACE_S = 0.25
"""After a drain that sent a partial batch, the next waits this long from its start: in a
burst (a takeover: each account's lease, restore and connect events within a second or
two) an account's events then go out together, one publish each instead of one per event
(the Pub/Sub client sends each ordering key, that is each account, in its own call)."""
DEFAULT_YIELD_S = 2.0
"""How long a due drain may wait while the connector starts or hands off accounts
(`run_forever`'s `yield_to`). A takeover starts hundreds at once, and their publishing (one
call per account) took about a fifth of the process's time from those starts; a handoff's
next holder waits for the final backups. The events are only late, by at most this long."""
YIELD_POLL_S = 0.1
"""How often a drain held back by `yield_to` asks again."""
PUT_BATCH = 500
"""Events stored per transaction by `put`."""


def default_outbox_path(sessions_path: Path) -> Path:
    """`{SESSIONS_PATH}/.wa-keeper/outbox.db`: on the persistent volume, beside the sessions."""
    return sessions_path / ".wa-keeper" / "outbox.db"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of a failing account: tenacity's exponential wait with jitter, capped."""

    initial_s: float = 0.5
    max_s: float = 60.0
    jitter_s: float = 0.5

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th consecutive failure (1-based)."""
        wait = tenacity.wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_s, jitter=self.jitter_s
        )
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, failures)
        return float(wait(state))


@dataclass(frozen=True)
class Backoff:
    """An account whose last attempt failed: how often in a row, and when to try again."""

    failures: int
    retry_at: float


def blocked_accounts(backoff: Mapping[str, Backoff], now: float) -> set[str]:
    """Accounts still waiting out their backoff at monotonic time `now`."""
    return {account for account, state in backoff.items() if state.retry_at > now}


def next_retry_at(backoff: Mapping[str, Backoff], now: float) -> float | None:
    """The earliest future retry time, or None when no account is waiting."""
    times = [state.retry_at for state in backoff.values() if state.retry_at > now]
    return min(times) if times else None


def after_attempt(
    backoff: Mapping[str, Backoff],
    results: Sequence[tuple[str, bool]],
    now: float,
    delay: Callable[[int], float],
) -> dict[str, Backoff]:
    """New backoff after one batch: an account with any failure waits longer, a clean one is cleared."""
    failed = {account for account, ok in results if not ok}
    updated = dict(backoff)
    for account in {account for account, _ in results}:
        if account in failed:
            failures = backoff[account].failures + 1 if account in backoff else 1
            updated[account] = Backoff(failures=failures, retry_at=now + delay(failures))
        else:
            updated.pop(account, None)
    return updated


def pace_delay(paced_from: float | None, now: float, pace_s: float) -> float:
    """Seconds to wait before the next drain: what is left of `pace_s` since `paced_from`, the
    start of the last drain that sent a partial batch (None: none since, drain at once)."""
    return 0.0 if paced_from is None else max(0.0, paced_from + pace_s - now)


def yield_delay(busy: bool, due_since: float, now: float, yield_s: float) -> float:
    """Seconds to hold back a drain due since `due_since` while the connector is `busy`
    (starting or handing off accounts): until the next poll, never past `yield_s` after it
    became due."""
    if not busy:
        return 0.0
    return max(0.0, min(YIELD_POLL_S, due_since + yield_s - now))


def idle_delay(attempted: bool, wake_at: float | None, now: float) -> float | None:
    """How long the loop may wait before the next drain: 0 after work, until the
    earliest retry when accounts are backing off, else None (until an emit)."""
    if attempted:
        return 0.0
    if wake_at is None:
        return None
    return max(0.0, wake_at - now)


@dataclass(frozen=True)
class DrainReport:
    sent: int
    failed: int
    wake_at: float | None

    @property
    def attempted(self) -> bool:
        return self.sent + self.failed > 0


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    published: int
    failed_attempts: int
    backing_off: dict[str, int]
    """account -> consecutive failures, for accounts whose last attempt failed."""


class Outbox:
    """The connector's `EventSink`: durable local queue plus the loop that drains it."""

    def __init__(
        self,
        path: Path,
        publisher: EventPublisher,
        clock: Clock,
        *,
        metrics: ConnectorMetrics | None = None,
        policy: RetryPolicy | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        pace_s: float = DEFAULT_PACE_S,
        yield_s: float = DEFAULT_YIELD_S,
    ) -> None:
        self._store = OutboxStore(path, max_events)
        self._publisher = publisher
        self._clock = clock
        self._metrics = metrics if metrics is not None else ConnectorMetrics()
        self._policy = policy if policy is not None else RetryPolicy()
        self._batch_size, self._pace_s, self._yield_s = batch_size, pace_s, yield_s
        self._backoff: dict[str, Backoff] = {}
        self._published = 0
        self._failed_attempts = 0
        self._drain_lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._metrics.outbox_depth.set(self._store.depth)
        self._puts: Grouped[str, LifecycleEvent, bool | OutboxError] = Grouped(self._put_group, PUT_BATCH)

    @property
    def path(self) -> Path:
        return self._store.path

    def emit(self, event: LifecycleEvent) -> None:
        """Store the event (thread-safe, local only); raises OutboxError when it cannot."""
        try:
            self._store.add(EventMessage.of(event), event.type.value, self._clock.now().timestamp())
        except Exception:
            self._metrics.outbox_rejected.inc()
            raise
        self._stored()

    async def put(self, event: LifecycleEvent) -> None:
        """`emit` for the event loop: stored off the loop, in one transaction (one fsync) with
        the events put meanwhile; returns once it is stored. A takeover emits hundreds of
        events within a second: one commit each on the loop held it up for all accounts."""
        await self._puts.submit(event.event_id, event)

    async def _put_group(self, items: list[tuple[str, LifecycleEvent]]) -> list[bool | OutboxError]:
        at = self._clock.now().timestamp()
        rows = [(EventMessage.of(event), event.type.value, at) for _, event in items]
        try:
            results = await asyncio.to_thread(self._store.add_many, rows)
        except Exception:
            self._metrics.outbox_rejected.inc(len(items))
            raise
        self._metrics.outbox_rejected.inc(sum(isinstance(r, Exception) for r in results))
        self._stored()
        return results

    def _stored(self) -> None:
        self._metrics.outbox_depth.set(self._store.depth)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    def depth(self) -> int:
        return self._store.depth

    def stats(self) -> OutboxStats:
        return OutboxStats(
            depth=self._store.depth,
            published=self._published,
            failed_attempts=self._failed_attempts,
            backing_off={account: state.failures for account, state in self._backoff.items()},
        )

    async def drain_once(self) -> DrainReport:
        """Send one batch and record the outcomes (acknowledged rows are deleted)."""
        async with self._drain_lock:
            now = self._clock.monotonic()
            rows = self._store.oldest(self._batch_size, exclude=blocked_accounts(self._backoff, now))
            if not rows:
                return DrainReport(sent=0, failed=0, wake_at=next_retry_at(self._backoff, now))
            results = list(zip(rows, await self._attempt(rows), strict=True))
            done = self._clock.monotonic()
            acked = [row for row, outcome in results if outcome.ok]
            failed = [(row, outcome.error or "") for row, outcome in results if not outcome.ok]
            # Off the loop: the commit waits for the disk (fsync).
            await asyncio.to_thread(
                self._store.settle,
                [row.seq for row in acked],
                [row.seq for row, _ in failed],
                failed[0][1] if failed else "",
            )
            outcomes = [(row.account_id, outcome.ok) for row, outcome in results]
            self._backoff = after_attempt(self._backoff, outcomes, done, self._policy.delay)
            self._observe(acked, failed)
            return DrainReport(len(acked), len(failed), next_retry_at(self._backoff, done))

    async def _attempt(self, rows: list[StoredEvent]) -> list[PublishOutcome]:
        """The publisher's outcomes; an exception or a wrong count fails the whole batch."""
        try:
            outcomes = await self._publisher.publish([row.message for row in rows])
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            return [PublishOutcome(error=error)] * len(rows)
        if len(outcomes) != len(rows):
            return [PublishOutcome(error="publisher returned a wrong number of outcomes")] * len(rows)
        return outcomes

    def _observe(self, acked: list[StoredEvent], failed: list[tuple[StoredEvent, str]]) -> None:
        wall = self._clock.now().timestamp()
        for row in acked:
            self._metrics.events_published.labels(type=row.event_type).inc()
            self._metrics.publish_latency.observe(max(0.0, wall - row.enqueued_at))
        self._published += len(acked)
        self._failed_attempts += len(failed)
        self._metrics.publish_failures.inc(len(failed))
        self._metrics.outbox_depth.set(self._store.depth)
        if failed:
            accounts = sorted({row.account_id for row, _ in failed})
            log.warning(
                "outbox: %d event(s) of %d account(s) not published, will retry: %s",
                len(failed),
                len(accounts),
                failed[0][1],
            )

    async def run_forever(self, yield_to: Callable[[], bool] | None = None) -> None:
        """Drain until `stop()`: right away after an emit (paced while events keep coming:
        `DEFAULT_PACE_S`), else at the next retry time. `yield_to`: whether more urgent work
        runs (accounts starting or handed off); a due drain waits for it, at most `yield_s`."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        store_failures = 0
        paced_from: float | None = None
        due_since: float | None = None
        try:
            while not self._stopping:
                now = self._clock.monotonic()
                rest = pace_delay(paced_from, now, self._pace_s)
                if rest > 0:
                    await self._clock.sleep(rest)  # `flush` sends what is left at shutdown
                    continue
                due_since = now if due_since is None else due_since
                held = yield_delay(yield_to is not None and yield_to(), due_since, now, self._yield_s)
                if held > 0:
                    await self._clock.sleep(held)
                    continue
                due_since = None
                self._wake.clear()
                started = self._clock.monotonic()
                try:
                    report = await self.drain_once()
                    store_failures = 0
                except OutboxError as exc:  # the local file failed (disk full...): rows stay, try later
                    store_failures += 1
                    log.error("outbox: %s", exc)
                    report = DrainReport(0, 0, self._clock.monotonic() + self._policy.delay(store_failures))
                partial = report.attempted and report.sent + report.failed < self._batch_size
                paced_from = started if partial and self._pace_s > 0 else None
                delay = idle_delay(report.attempted, report.wake_at, self._clock.monotonic())
                if delay != 0.0 and not self._stopping:
                    await self._wait(delay)
        finally:
            self._loop = None

    async def _wait(self, delay: float | None) -> None:
        assert self._wake is not None
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if delay is not None:
            waiters.append(asyncio.ensure_future(self._clock.sleep(delay)))
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()

    async def flush(self, timeout_s: float) -> bool:
        """Drain until empty (True) or until `timeout_s` seconds on the clock have passed (False).

        Works with or without `run_forever` running; a batch already in flight
        finishes first, which can overrun the timeout by the publisher's deadline.
        """
        deadline = self._clock.monotonic() + timeout_s
        while self._store.depth > 0:
            now = self._clock.monotonic()
            if now >= deadline:
                return False
            report = await self.drain_once()
            if not report.attempted:
                wait = idle_delay(False, report.wake_at, now)
                await self._clock.sleep(min(deadline - now, 0.05 if wait is None else wait))
        return True

    def stop(self) -> None:
        """Ask `run_forever` to return after the current batch (call from its loop's thread)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def close(self) -> None:
        """Close the database (after `stop()`); later `emit` calls raise OutboxClosedError."""
        self._store.close()
