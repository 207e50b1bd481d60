"""The outbox against the in-memory publisher and a fake clock: durable, ordered, retried."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from connector.adapters.memory_publisher import PAUSED, MemoryPublisher
from connector.clock import FakeClock
from connector.metrics import ConnectorMetrics
from connector.outbox import (
    Outbox,
    OutboxClosedError,
    OutboxError,
    OutboxFullError,
    RetryPolicy,
    default_outbox_path,
    pace_delay,
    yield_delay,
)
from connector.ports import EventMessage, PublishOutcome
from tests.integration.stack_support import wait_until
from wa_wire import EventType, LifecycleEvent, to_json

NO_JITTER = RetryPolicy(initial_s=1.0, max_s=8.0, jitter_s=0.0)


def event(
    account: str, kind: EventType = EventType.CONNECTED, clock: FakeClock | None = None
) -> LifecycleEvent:
    return LifecycleEvent.new(
        kind,
        account_id=account,
        connector_id="conn-1",
        lease_epoch=3,
        at=(clock or FakeClock()).now(),
        detail="unit test",
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher(topic_exists=True)


@pytest.fixture
def make_outbox(
    tmp_path: Path, clock: FakeClock, publisher: MemoryPublisher
) -> Iterator[Callable[..., Outbox]]:
    opened: list[Outbox] = []

    def make(pub: MemoryPublisher | None = None, **kwargs: object) -> Outbox:
        kwargs.setdefault("policy", NO_JITTER)
        box = Outbox(tmp_path / "outbox.db", pub or publisher, clock, **kwargs)  # type: ignore[arg-type]
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def ids(pub: MemoryPublisher, account: str | None = None) -> list[str]:
    return [m.event_id for _, m in pub.published if account is None or m.ordering_key == account]


async def test_emitted_events_are_published_as_the_contract_says(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    events = [event("acct-a"), event("acct-b", EventType.LOGGED_OUT), event("acct-a", EventType.DISCONNECTED)]
    for evt in events:
        box.emit(evt)
    assert box.depth() == 3
    assert await box.flush(10)
    assert box.depth() == 0
    by_id = {m.event_id: m for _, m in publisher.published}
    for evt in events:
        assert by_id[evt.event_id] == EventMessage(
            evt.event_id, evt.account_id, to_json(evt).encode(), evt.pubsub_attributes()
        )
    assert ids(publisher) == [e.event_id for e in events]


async def test_emit_is_local_only_and_keeps_everything_while_pubsub_is_down(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    publisher.go_down()
    events = [event(f"acct-{i % 3}") for i in range(30)]
    for evt in events:
        box.emit(evt)
    assert publisher.attempts == 0, "emit never calls the publisher"
    assert not await box.flush(60)
    assert box.depth() == 30
    assert publisher.published == []
    stats = box.stats()
    assert stats.failed_attempts > 0
    assert set(stats.backing_off) == {"acct-0", "acct-1", "acct-2"}

    publisher.come_back()
    assert await box.flush(60)
    assert sorted(ids(publisher)) == sorted(e.event_id for e in events)
    for account in ("acct-0", "acct-1", "acct-2"):
        assert ids(publisher, account) == [e.event_id for e in events if e.account_id == account]
    assert box.stats().backing_off == {}


async def test_a_failing_account_backs_off_exponentially_up_to_the_cap(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher, clock: FakeClock
) -> None:
    box = make_outbox()
    box.emit(event("acct-a"))
    publisher.go_down()
    tries: list[float] = []
    for _ in range(6):
        start = clock.monotonic()
        report = await box.drain_once()
        assert report.failed == 1
        assert report.wake_at is not None
        tries.append(report.wake_at - start)
        assert (await box.drain_once()).attempted is False, "blocked until its retry time"
        clock.advance(report.wake_at - clock.monotonic())
    assert tries == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert box.stats().backing_off == {"acct-a": 6}


async def test_one_failing_account_does_not_hold_back_another(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher, clock: FakeClock
) -> None:
    box = make_outbox()
    a1, b1, a2, b2 = event("acct-a"), event("acct-b"), event("acct-a"), event("acct-b")
    for evt in (a1, b1, a2, b2):
        box.emit(evt)
    publisher.fail_next(1)  # a1 fails; the paused key fails a2 too
    report = await box.drain_once()
    assert (report.sent, report.failed) == (2, 2)
    assert ids(publisher) == [b1.event_id, b2.event_id]
    assert box.stats().backing_off == {"acct-a": 1}
    box.emit(b3 := event("acct-b"))
    await box.drain_once()
    assert ids(publisher) == [b1.event_id, b2.event_id, b3.event_id], "acct-b goes on, acct-a waits"
    clock.advance(1.0)
    await box.drain_once()
    assert ids(publisher, "acct-a") == [a1.event_id, a2.event_id], "acct-a keeps its order"


async def test_the_publisher_pauses_a_key_after_a_failure_within_one_call() -> None:
    pub = MemoryPublisher(topic_exists=True)
    pub.fail_next(1)
    first, second = EventMessage.of(event("k")), EventMessage.of(event("k"))
    outcomes = await pub.publish([first, second])
    assert [o.error for o in outcomes] == ["injected failure", PAUSED]


async def test_a_new_outbox_on_the_same_file_sends_what_was_left(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    publisher.go_down()
    events = [event(f"acct-{i % 2}") for i in range(10)]
    for evt in events:
        box.emit(evt)
    await box.drain_once()
    box.close()

    fresh = MemoryPublisher(topic_exists=True)
    again = make_outbox(fresh)
    assert again.depth() == 10
    assert await again.flush(10)
    assert ids(fresh) == [e.event_id for e in events]


async def test_emitting_the_same_event_twice_stores_it_once(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    evt = event("acct-a")
    box.emit(evt)
    box.emit(evt)
    assert box.depth() == 1
    assert await box.flush(10)
    assert ids(publisher) == [evt.event_id]


async def test_a_full_outbox_refuses_with_an_error_and_keeps_what_it_has(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    metrics = ConnectorMetrics()
    box = make_outbox(max_events=3, metrics=metrics)
    kept = [event("acct-a") for _ in range(3)]
    for evt in kept:
        box.emit(evt)
    with pytest.raises(OutboxFullError, match=r"outbox is full \(3 events"):
        box.emit(event("acct-a"))
    assert metrics.registry.get_sample_value("wa_keeper_outbox_rejected_total") == 1.0
    assert await box.flush(10)
    assert ids(publisher) == [e.event_id for e in kept]
    box.emit(later := event("acct-a"))
    assert await box.flush(10)
    assert ids(publisher)[-1] == later.event_id


async def test_events_put_while_one_is_stored_share_one_transaction_in_order(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    events = [event(f"acct-{i % 3}") for i in range(6)]
    await asyncio.gather(*(box.put(evt) for evt in events))
    assert box.depth() == 6 and box._puts.runs == 1, "put at once: one transaction"
    await box.put(events[0])  # a repeat: stored once
    assert await box.flush(10)
    assert ids(publisher) == [e.event_id for e in events]


def test_events_emitted_from_threads_meanwhile_share_the_next_transaction(
    make_outbox: Callable[..., Outbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restores emit their events from threads of their own: those arriving while one commit
    runs go together in the next one (one fsync), each thread told its own outcome."""
    box = make_outbox(max_events=5)
    store = box._store
    commits: list[int] = []
    first_in, go_on = threading.Event(), threading.Event()
    real_add_many = store.add_many

    def add_many(rows: Sequence[tuple[EventMessage, str, float]]) -> list[bool | OutboxError]:
        commits.append(len(rows))
        if len(commits) == 1:
            first_in.set()
            go_on.wait(10)
        return real_add_many(rows)

    monkeypatch.setattr(store, "add_many", add_many)
    outcomes: dict[str, str] = {}

    def emit(evt: LifecycleEvent) -> None:
        try:
            box.emit(evt)
            outcomes[evt.event_id] = "stored"
        except OutboxFullError:
            outcomes[evt.event_id] = "full"

    events = [event(f"acct-{i}") for i in range(7)]
    threads = [threading.Thread(target=emit, args=(evt,)) for evt in events]
    threads[0].start()
    assert first_in.wait(10)
    for thread in threads[1:]:
        thread.start()
    wait_until("six emits queued behind the commit", lambda: len(store._queued) == 6, 10, every_s=0.001)
    go_on.set()
    for thread in threads:
        thread.join(10)
    assert commits == [1, 6]
    assert outcomes[events[0].event_id] == "stored"
    assert sorted(outcomes.values()) == ["full"] * 2 + ["stored"] * 5
    assert box.depth() == 5


def test_a_failed_group_transaction_fails_every_emit_in_it(
    make_outbox: Callable[..., Outbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_outbox()

    def broken(rows: Sequence[tuple[EventMessage, str, float]]) -> list[bool | OutboxError]:
        raise OutboxError("disk I/O error")

    monkeypatch.setattr(box._store, "add_many", broken)
    with pytest.raises(OutboxError, match="disk I/O error"):
        box.emit(event("acct-a"))
    monkeypatch.undo()
    box.emit(later := event("acct-a"))  # the next emit commits again
    assert box.depth() == 1 and later.event_id


def test_a_commit_interrupted_by_a_base_exception_answers_its_rows_and_frees_the_next_commit(
    make_outbox: Callable[..., Outbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Interrupted(BaseException):
        pass

    box = make_outbox()
    real_add_many = box._store.add_many

    def interrupted(rows: Sequence[tuple[EventMessage, str, float]]) -> list[bool | OutboxError]:
        raise Interrupted

    monkeypatch.setattr(box._store, "add_many", interrupted)
    with pytest.raises(Interrupted):
        box.emit(event("acct-a"))
    monkeypatch.setattr(box._store, "add_many", real_add_many)
    box.emit(event("acct-a"))  # not left waiting for a commit that never ends
    assert box.depth() == 1


async def test_put_into_a_full_outbox_refuses_only_what_does_not_fit(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    metrics = ConnectorMetrics()
    box = make_outbox(max_events=3, metrics=metrics)
    box.emit(first := event("acct-a"))
    events = [event("acct-b") for _ in range(4)]
    results = await asyncio.gather(*(box.put(evt) for evt in events), return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "NoneType",
        "OutboxFullError",
        "OutboxFullError",
    ]
    assert box.depth() == 3
    assert metrics.registry.get_sample_value("wa_keeper_outbox_rejected_total") == 2.0
    assert await box.flush(10)
    assert ids(publisher) == [first.event_id, events[0].event_id, events[1].event_id]
    box.close()
    with pytest.raises(OutboxClosedError, match="closed"):
        await box.put(event("acct-a"))


async def test_emit_after_close_is_an_error(make_outbox: Callable[..., Outbox]) -> None:
    box = make_outbox()
    box.close()
    with pytest.raises(OutboxClosedError, match="closed"):
        box.emit(event("acct-a"))


def test_a_second_outbox_on_an_open_file_is_refused(make_outbox: Callable[..., Outbox]) -> None:
    box = make_outbox()
    box.emit(event("acct-a"))
    with pytest.raises(OutboxError, match="in use by another process"):
        make_outbox()
    assert box.depth() == 1


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda p: p.write_bytes(b"this is not sqlite at all" * 100), "is not an outbox database"),
        (lambda p: _sqlite(p, "CREATE TABLE whatsmeow_device (jid TEXT)"), "it has tables: whatsmeow_device"),
        (lambda p: _sqlite(p, "PRAGMA user_version = 99"), "newer wa-keeper"),
        (lambda p: _sqlite(p, "PRAGMA user_version = 1"), "no events table"),
    ],
)
def test_a_file_that_is_not_our_outbox_is_refused_and_left_alone(
    tmp_path: Path, prepare: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "outbox.db"
    prepare(path)
    before = path.read_bytes()
    with pytest.raises(OutboxError, match=message):
        Outbox(path, MemoryPublisher(), FakeClock())
    assert path.read_bytes() == before


def _sqlite(path: Path, statement: str) -> None:
    db = sqlite3.connect(path)
    db.execute(statement)
    db.commit()
    db.close()


def test_an_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="cannot create the outbox folder"):
        Outbox(tmp_path / "file" / "outbox.db", MemoryPublisher(), FakeClock())


def test_the_default_path_is_on_the_sessions_volume(tmp_path: Path) -> None:
    assert default_outbox_path(tmp_path) == tmp_path / ".wa-keeper" / "outbox.db"


class RaisingPublisher(MemoryPublisher):
    """A publisher with a bug: it raises, or answers with the wrong number of outcomes."""

    def __init__(self, mode: str) -> None:
        super().__init__(topic_exists=True)
        self.mode = mode

    async def publish(self, messages: Sequence[EventMessage]) -> list[PublishOutcome]:
        if self.mode == "raise":
            raise RuntimeError("boom")
        return []


@pytest.mark.parametrize(("mode", "error"), [("raise", "RuntimeError: boom"), ("short", "wrong number")])
async def test_a_broken_publisher_fails_the_batch_and_loses_nothing(
    make_outbox: Callable[..., Outbox], tmp_path: Path, mode: str, error: str
) -> None:
    box = make_outbox(RaisingPublisher(mode))
    box.emit(event("acct-a"))
    report = await box.drain_once()
    assert (report.sent, report.failed) == (0, 1)
    assert box.depth() == 1
    box.close()
    row = (
        sqlite3.connect(tmp_path / "outbox.db").execute("SELECT attempts, last_error FROM events").fetchone()
    )
    assert row[0] == 1
    assert error in row[1]


async def test_metrics_follow_the_outbox(make_outbox: Callable[..., Outbox], clock: FakeClock) -> None:
    metrics = ConnectorMetrics()
    box = make_outbox(metrics=metrics)
    box.emit(event("acct-a", EventType.LOGGED_OUT))
    box.emit(event("acct-a", EventType.CONNECTED))
    assert metrics.registry.get_sample_value("wa_keeper_outbox_depth") == 2
    clock.advance(7.5)
    assert await box.flush(10)
    value = metrics.registry.get_sample_value
    assert value("wa_keeper_outbox_depth") == 0
    assert value("wa_keeper_events_published_total", {"type": "logged_out"}) == 1
    assert value("wa_keeper_events_published_total", {"type": "connected"}) == 1
    assert value("wa_keeper_event_publish_seconds_count") == 2
    assert value("wa_keeper_event_publish_seconds_sum") == pytest.approx(15.0)


async def until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Yield to the loop until `condition` holds; fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + deadline_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


async def test_run_forever_wakes_on_emit_from_any_thread_and_stops(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    runner = asyncio.create_task(box.run_forever())
    box.emit(first := event("acct-a"))
    await until(lambda: ids(publisher) == [first.event_id])
    await asyncio.to_thread(box.emit, second := event("acct-b"))
    await until(lambda: ids(publisher) == [first.event_id, second.event_id])
    box.stop()
    await asyncio.wait_for(runner, 10)
    assert box.depth() == 0


async def test_run_forever_retries_until_pubsub_is_back(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher
) -> None:
    box = make_outbox()
    publisher.go_down()
    runner = asyncio.create_task(box.run_forever())
    events = [event("acct-a") for _ in range(5)]
    for evt in events:
        box.emit(evt)
    await until(lambda: box.stats().failed_attempts >= 15)
    assert publisher.published == []
    publisher.come_back()
    await until(lambda: box.depth() == 0)
    box.stop()
    await asyncio.wait_for(runner, 10)
    assert ids(publisher) == [e.event_id for e in events]


async def test_a_local_write_failure_after_publishing_means_a_duplicate_not_a_loss(
    make_outbox: Callable[..., Outbox], publisher: MemoryPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_outbox()
    store = box._store
    real_settle = store.settle
    calls = []

    def settle_fails_once(acked: Sequence[int], failed: Sequence[int], error: str) -> None:
        calls.append(len(acked))
        if len(calls) == 1:
            raise OutboxError("cannot record publish outcomes in the outbox: disk I/O error")
        real_settle(acked, failed, error)

    monkeypatch.setattr(store, "settle", settle_fails_once)
    runner = asyncio.create_task(box.run_forever())
    box.emit(evt := event("acct-a"))
    await until(lambda: box.depth() == 0)
    box.stop()
    await asyncio.wait_for(runner, 10)
    assert ids(publisher) == [evt.event_id, evt.event_id], "sent again under the same event_id"


@pytest.mark.parametrize(
    ("paced_from", "now", "rest", "case"),
    [
        (None, 10.0, 0.0, "no partial batch sent since: drain at once"),
        (10.0, 10.1, 0.15, "a partial batch went out 0.1 s ago: gather for the rest of the pace"),
        (10.0, 10.25, 0.0, "the pace is over"),
        (10.0, 12.0, 0.0, "long over"),
    ],
)
def test_pace_delay(paced_from: float | None, now: float, rest: float, case: str) -> None:
    assert pace_delay(paced_from, now, 0.25) == pytest.approx(rest), case


@pytest.mark.parametrize(
    ("busy", "due_since", "now", "held", "case"),
    [
        (False, 10.0, 10.0, 0.0, "nothing more urgent runs: drain at once"),
        (True, 10.0, 10.0, 0.1, "accounts are starting: ask again at the next poll"),
        (True, 10.0, 11.95, 0.05, "the last poll ends when the hold does"),
        (True, 10.0, 12.0, 0.0, "held back as long as allowed: drain although they still start"),
        (True, 10.0, 15.0, 0.0, "long past the hold"),
        (False, 10.0, 15.0, 0.0, "not busy, long due"),
    ],
)
def test_yield_delay(busy: bool, due_since: float, now: float, held: float, case: str) -> None:
    assert yield_delay(busy, due_since, now, 2.0) == pytest.approx(held), case


class GatedClock(FakeClock):
    """`sleep` waits for the test to open `gate` (then advances as a FakeClock does)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.sleeping = asyncio.Event(), asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await self.gate.wait()
        self.gate.clear()
        self.sleeping.clear()
        await super().sleep(seconds)


class CountingPublisher(MemoryPublisher):
    def __init__(self) -> None:
        super().__init__(topic_exists=True)
        self.calls: list[list[str]] = []  # the accounts of each publish call

    async def publish(self, messages: Sequence[EventMessage]) -> list[PublishOutcome]:
        self.calls.append([m.ordering_key for m in messages])
        return await super().publish(messages)


async def test_events_of_a_burst_go_out_together_after_the_pace(tmp_path: Path) -> None:
    """The first event goes at once; those emitted while its drain's pace runs go in the next
    drain, together: the Pub/Sub client then sends each account's events in one call."""
    clock, publisher = GatedClock(), CountingPublisher()
    box = Outbox(tmp_path / "outbox.db", publisher, clock, policy=NO_JITTER, pace_s=0.25)
    try:
        runner = asyncio.create_task(box.run_forever())
        box.emit(event("acct-a"))
        await until(lambda: publisher.calls == [["acct-a"]])
        await until(clock.sleeping.is_set)  # pacing: nothing drains meanwhile
        for account in ("acct-a", "acct-b", "acct-a"):
            box.emit(event(account))
        await asyncio.sleep(0.01)
        assert publisher.calls == [["acct-a"]]
        clock.gate.set()
        await until(lambda: len(publisher.calls) == 2)
        assert publisher.calls[1] == ["acct-a", "acct-b", "acct-a"]
        await until(clock.sleeping.is_set)  # paced again after a partial batch
        clock.gate.set()  # then idle: the next event goes at once
        await until(lambda: not clock.sleeping.is_set())
        box.emit(event("acct-c"))
        await until(lambda: len(publisher.calls) == 3)
        box.stop()
        clock.gate.set()
        await asyncio.wait_for(runner, 10)
    finally:
        box.close()


async def test_a_due_drain_waits_while_the_connector_starts_accounts(tmp_path: Path) -> None:
    """Events wait while `yield_to` says accounts are starting, then go at the next poll."""
    clock, publisher = GatedClock(), CountingPublisher()
    box = Outbox(tmp_path / "outbox.db", publisher, clock, policy=NO_JITTER, yield_s=2.0)
    starting, start = True, clock.monotonic()
    try:
        runner = asyncio.create_task(box.run_forever(yield_to=lambda: starting))
        box.emit(event("acct-a"))
        for polls in range(1, 4):  # held back, one poll after another
            await until(clock.sleeping.is_set)
            await asyncio.sleep(0.01)
            assert publisher.calls == [], f"published during poll {polls}"
            clock.gate.set()
            await until(lambda n=polls: clock.monotonic() - start > n * 0.1 - 1e-9)  # type: ignore[misc]
        await until(clock.sleeping.is_set)  # the fourth poll
        starting = False
        clock.gate.set()
        await until(lambda: publisher.calls == [["acct-a"]])
        assert clock.monotonic() - start == pytest.approx(0.4)  # went at the end of that poll
        box.stop()
        clock.gate.set()
        await asyncio.wait_for(runner, 10)
    finally:
        box.close()


async def test_a_drain_held_back_goes_out_after_yield_s_even_while_accounts_still_start(
    tmp_path: Path,
) -> None:
    clock, publisher = GatedClock(), CountingPublisher()
    box = Outbox(tmp_path / "outbox.db", publisher, clock, policy=NO_JITTER, yield_s=2.0)
    start = clock.monotonic()
    try:
        runner = asyncio.create_task(box.run_forever(yield_to=lambda: True))
        box.emit(event("acct-a"))
        while not publisher.calls:
            await until(lambda: clock.sleeping.is_set() or bool(publisher.calls))
            if not publisher.calls:
                before = clock.monotonic()
                clock.gate.set()
                await until(lambda t=before: clock.monotonic() > t)  # type: ignore[misc]
        assert publisher.calls == [["acct-a"]]
        assert clock.monotonic() - start == pytest.approx(2.0)
        box.stop()
        clock.gate.set()
        await asyncio.wait_for(runner, 10)
    finally:
        box.close()
