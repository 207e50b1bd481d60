"""The elector loop over the in-memory store, with a fake clock (the store's clock is the same fake)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace

import pytest

from connector.adapters.memory_leases import MemoryLeaseStore
from connector.clock import FakeClock
from connector.lease import LeaseConfig
from connector.lease_loop import LeaseElector
from connector.lease_record import LeaseError, LeaseRecord, LeaseView
from connector.ports import Shown
from tests.unit.lease_helpers import FlakyStore, Recorder
from wa_wire import AccountStatus

CONFIG = LeaseConfig()


class Host:
    """One connector: its path to the shared store, its elector, what its listener heard."""

    def __init__(self, name: str, store: MemoryLeaseStore, clock: FakeClock) -> None:
        self.path = FlakyStore(store)
        self.heard = Recorder()
        self.elector = LeaseElector(
            store=self.path, holder=name, config=CONFIG, clock=clock, listener=self.heard
        )

    async def step(self) -> float:
        next_at = self.elector.step()
        await self.elector.drain()
        return next_at


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryLeaseStore:
    return MemoryLeaseStore(server_clock=clock)


async def run(clock: FakeClock, hosts: list[Host], seconds: float, dt: float = 0.25) -> None:
    """Step every host every `dt` seconds of fake time."""
    for _ in range(round(seconds / dt)):
        clock.advance(dt)
        for host in hosts:
            await host.step()


async def test_takes_a_missing_lease_and_renews_it_every_ttl_third(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await a.step()  # read
    await a.step()  # acquire
    assert a.heard.events == [("acquired", "acct", 1)]
    assert a.elector.held() == {"acct": 1}
    first = (await store.get("acct")).record
    await run(clock, [a], 20.0)
    renewals = [c for c in a.path.calls if c[0] == "renew"]
    assert len(renewals) == 4  # at 5, 10, 15, 20 s
    now = (await store.get("acct")).record
    assert first is not None and now is not None
    assert (now.epoch, now.acquired_at) == (1, first.acquired_at)
    assert (now.renewed_at - first.renewed_at).total_seconds() == pytest.approx(20.0, abs=0.5)
    assert a.heard.events == [("acquired", "acct", 1)]


async def test_a_standby_takes_over_one_ttl_after_the_holder_went_silent(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    b.elector.set_claims({"acct": 0.0})
    await run(clock, [a, b], 5.0)
    assert b.heard.events == []  # a renews: b waits
    before = (await store.get("acct")).record
    a.path.down = True  # a is cut off from the store after its renewal at 5 s
    await run(clock, [a, b], 20.0)
    assert a.heard.events == [("acquired", "acct", 1), ("deadline_missed", "acct", 1)]
    assert b.heard.events == [("acquired", "acct", 2)]
    after = (await store.get("acct")).record
    assert before is not None and after is not None
    silent_for = (after.acquired_at - before.renewed_at).total_seconds()
    assert CONFIG.ttl_s <= silent_for <= CONFIG.ttl_s + 0.5  # not before a TTL, and promptly after
    a.path.down = False  # a is back: b's lease is fresh, a waits and does not take it
    await run(clock, [a, b], 10.0)
    assert a.elector.held() == {} and b.elector.held() == {"acct": 2}


async def test_missing_the_renew_deadline_stops_the_account_and_reacquires_at_a_new_epoch(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    acquired_at = clock.monotonic()
    a.path.down = True
    await run(clock, [a], 12.0)
    missed = [e for e in a.heard.events if e[0] == "deadline_missed"]
    assert missed == [("deadline_missed", "acct", 1)]
    assert a.elector.held() == {}
    # retries were paced by the retry period, not hammered
    failed = [c for c in a.path.calls if c[0] == "renew"]
    assert 3 <= len(failed) <= math.ceil(12.0 / CONFIG.retry_period_s)
    assert clock.monotonic() - acquired_at >= CONFIG.renew_deadline_s
    a.path.down = False
    await run(clock, [a], 3.0)
    assert a.heard.events[-1] == ("acquired", "acct", 2)  # its own lease again, fenced by a new epoch


async def test_a_hung_renewal_does_not_delay_the_deadline(clock: FakeClock, store: MemoryLeaseStore) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    a.path.gate = asyncio.Event()  # the next call hangs
    for _ in range(48):  # 12 s of fake time, without waiting for the hung call
        clock.advance(0.25)
        a.elector.step()
        await asyncio.sleep(0)
    assert a.heard.events[-1] == ("deadline_missed", "acct", 1)
    assert a.elector.held() == {}
    a.path.gate.set()  # the renewal lands late: it must not bring the old epoch back
    await a.elector.drain()
    assert a.elector.held() == {}
    a.path.gate = None
    await run(clock, [a], 3.0)
    assert a.elector.held() == {"acct": 2}


class SlowAnswers(FlakyStore):
    """Reads happen at once; their answers arrive when `answer` is set (a slow network back)."""

    def __init__(self, store: MemoryLeaseStore, answer: asyncio.Event) -> None:
        super().__init__(store)
        self.answer = answer

    async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        self.calls.append(("get_many", tuple(accounts)))
        views = await self.store.get_many(accounts)
        await self.answer.wait()
        return views


class SlowAcquires(FlakyStore):
    """Acquisitions hang until `acquires` is set; everything else answers."""

    def __init__(self, store: MemoryLeaseStore) -> None:
        super().__init__(store)
        self.acquires = asyncio.Event()

    async def try_acquire_many(
        self,
        claims: Sequence[tuple[str, LeaseRecord | None]],
        holder: str,
        ttl_ms: int,
        shown: Shown | None = None,
    ) -> list[LeaseView]:
        await self.acquires.wait()
        return await super().try_acquire_many(claims, holder, ttl_ms, shown)


async def test_renewals_do_not_wait_behind_a_takeover_s_acquisitions(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    """Taking over 200 accounts: the leases taken first are renewed while the rest are still
    being acquired (a renewal queued behind them missed its deadline)."""
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"early": 0.0})
    await run(clock, [a], 1.0)
    slow = SlowAcquires(store)
    a.elector.store = slow
    a.elector.set_claims({"early": 0.0, **{f"late-{i:02d}": 0.0 for i in range(40)}})
    for _ in range(40):  # 10 s of fake time: renewals due at 5 and 10 s, acquisitions all hung
        clock.advance(0.25)
        a.elector.step()
        for _ in range(5):
            await asyncio.sleep(0)
    assert a.elector.held() == {"early": 1}, a.heard.events
    assert ("deadline_missed", "early", 1) not in a.heard.events
    slow.acquires.set()
    await a.elector.drain()


async def test_a_takeover_seen_at_renewal_is_reported_lost(clock: FakeClock, store: MemoryLeaseStore) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    current = (await store.get("acct")).record
    await store.try_acquire("acct", "conn-x", CONFIG.ttl_ms, current)  # e.g. an operator's forced move
    await run(clock, [a], 5.0)
    assert ("lost", "acct", 1) in a.heard.events
    assert a.elector.held() == {}


async def test_a_head_start_delays_taking_a_free_lease(clock: FakeClock, store: MemoryLeaseStore) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 3.0})
    await run(clock, [a], 2.75)
    assert a.elector.held() == {}
    await run(clock, [a], 0.5)
    assert a.elector.held() == {"acct": 1}


async def test_a_release_hands_over_at_once(clock: FakeClock, store: MemoryLeaseStore) -> None:
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    b.elector.set_claims({"acct": 0.0})
    await run(clock, [a, b], 1.0)
    assert await a.elector.release("acct")
    assert a.elector.held() == {}
    await run(clock, [a, b], CONFIG.retry_period_s + 0.5)  # b notices at its next poll, not after a TTL
    assert b.elector.held() == {"acct": 2}
    assert a.heard.events == [("acquired", "acct", 1)]  # a release is not a loss
    assert not await a.elector.release("acct")  # nothing left to release


async def test_acquisitions_and_releases_show_the_statuses_they_are_given(clock: FakeClock) -> None:
    store = MemoryLeaseStore()
    a = Host("conn-a", store, clock)
    a.elector.acquire_shows = Shown(AccountStatus.CONNECTING, "taking it")
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    await run(clock, [a], CONFIG.renew_interval_s * 2)  # renewals show nothing
    assert await a.elector.release("acct", Shown(AccountStatus.UNATTENDED, "gone"))
    assert [(acc, u.status, u.reason, u.holder, u.epoch) for acc, u in store.shown] == [
        ("acct", AccountStatus.CONNECTING, "taking it", "conn-a", 1),
        ("acct", AccountStatus.UNATTENDED, "gone", "conn-a", 1),
    ]


async def test_a_hint_that_a_lease_was_released_reads_it_before_the_next_poll(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0, "other": 0.0})
    await run(clock, [a], 1.0)
    b.elector.set_claims({"acct": 0.0, "elsewhere": 0.0})
    await run(clock, [a, b], 0.5)  # b has read acct (held by a) and waits for its next poll
    assert await a.elector.release("acct")
    b.path.calls.clear()
    assert b.elector.held() == {"elsewhere": 1}
    b.elector.look(["acct", "other", "elsewhere"])  # not b's to take, or held already: not read
    await b.step()
    assert b.path.calls == [("get_many", ("acct",))]
    await b.step()  # no clock moved: taken on the hint, not at the poll
    assert b.elector.held() == {"acct": 2, "elsewhere": 1}


async def test_a_hint_arriving_while_the_lease_is_being_read_is_kept_for_after_that_read(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    """The poll's read went out before the release and answers "held by a": without the hint
    kept, b would wait for its next poll (2 s)."""
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    answer = asyncio.Event()
    b.path = SlowAnswers(store, answer)
    b.elector.store = b.path
    b.elector.set_claims({"acct": 0.0})
    b.elector.step()  # b's poll read reads the lease (a's) and its answer is slow
    for _ in range(3):
        await asyncio.sleep(0)
    assert await a.elector.release("acct")
    b.elector.look(["acct"])  # the hint, while b's read is out
    b.elector.step()
    answer.set()
    await b.elector.drain()
    assert b.path.calls == [("get_many", ("acct",))]
    assert b.elector.known()["acct"].view.holder() == "conn-a"  # type: ignore[union-attr]
    await b.step()  # no clock moved: read again at once, on the kept hint
    assert b.path.calls[1:] == [("get_many", ("acct",))]
    await b.step()
    assert b.elector.held() == {"acct": 2}


async def test_a_hint_for_an_account_being_taken_sends_no_read_that_could_answer_after_it(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    """b already saw the lease released and takes it; a hint for it arrives in the same step.
    A read sent beside the acquisition answered "released at 1" after it: b thought it had
    lost the lease it had just taken, stopped the account and took it again at epoch 3."""
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    assert await a.elector.release("acct")
    answer = asyncio.Event()
    answer.set()
    b.path = SlowAnswers(store, answer)
    b.elector.store = b.path
    b.elector.set_claims({"acct": 3.0})  # a head start to wait for: read now, taken later
    await b.step()
    answer.clear()  # reads from now on answer late
    clock.advance(3.0)
    b.elector.look(["acct"])
    b.elector.step()  # takes it: the hint adds no read of its own
    for _ in range(5):
        await asyncio.sleep(0)
    answer.set()
    await b.elector.drain()
    await b.step()
    assert b.elector.held() == {"acct": 2}
    assert b.heard.events == [("acquired", "acct", 2)]
    assert b.path.calls.count(("get_many", ("acct",))) == 1


async def test_a_read_answering_after_our_acquisition_with_an_older_epoch_is_not_a_loss(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    """Whatever sent it, a read that answers with an epoch older than the one we hold was
    served before our acquisition: the lease is still ours."""
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    assert await a.elector.release("acct")
    b.elector.set_claims({"acct": 0.0})
    await b.step()
    await b.step()
    assert b.elector.held() == {"acct": 2}
    (old,) = await store.get_many(["acct"])
    assert old.record is not None and old.record.epoch == 2
    stale = replace(old, record=replace(old.record, holder=None, epoch=1))
    b.elector._observe("acct", stale)  # the late answer of a read sent before the acquisition
    await b.step()
    assert b.elector.held() == {"acct": 2}
    assert [e[0] for e in b.heard.events] == ["acquired"]


async def test_a_lease_learned_from_a_clean_hint_is_taken_without_reading_it(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0, "kept": 0.0})
    await run(clock, [a], 1.0)
    b.elector.set_claims({"acct": 0.0, "kept": 0.0})  # both held by a: b waits
    await b.step()
    b.path.calls.clear()
    released = await a.elector.release("acct")
    assert released is not None and released.record is not None and released.record.holder is None
    b.elector.learn([released])
    await b.step()
    assert b.elector.held() == {"acct": 2}
    assert b.path.calls == [("learn", ("acct",)), ("try_acquire_many", ("acct",))]  # no read


async def test_a_learned_lease_that_moved_since_is_refused_and_read_again(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a, b, c = (Host(name, store, clock) for name in ("conn-a", "conn-b", "conn-c"))
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    released = await a.elector.release("acct")
    assert released is not None
    c.elector.set_claims({"acct": 0.0})
    await c.step()
    await c.step()
    assert c.elector.held() == {"acct": 2}  # taken before b heard the hint
    b.elector.set_claims({"acct": 0.0})
    b.elector.learn([released])
    await b.step()
    assert b.elector.held() == {}
    assert b.elector.known()["acct"].view.holder() == "conn-c"  # type: ignore[union-attr]
    assert b.heard.events == []


async def test_release_all_on_shutdown(clock: FakeClock, store: MemoryLeaseStore) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({f"acct-{i}": 0.0 for i in range(3)})
    await run(clock, [a], 1.0)
    assert len(a.elector.held()) == 3
    assert await a.elector.release_all() == 3
    views = await store.get_many([f"acct-{i}" for i in range(3)])
    assert [v.holder() for v in views] == [None, None, None]


async def test_a_failed_release_leaves_the_lease_to_expire(clock: FakeClock, store: MemoryLeaseStore) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    a.path.down = True
    assert not await a.elector.release("acct")
    assert a.elector.held() == {}  # not renewed any more: it expires after its TTL


async def test_two_hundred_accounts_read_in_one_batch_with_bounded_calls(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a = Host("conn-a", store, clock)
    accounts = [f"acct-{i:03d}" for i in range(200)]
    a.elector.set_claims(dict.fromkeys(accounts, 0.0))
    await a.step()
    assert a.path.calls == [("get_many", tuple(accounts))]
    await a.step()
    assert len(a.elector.held()) == 200
    acquisitions = [accounts for name, accounts in a.path.calls if name == "try_acquire_many"]
    assert acquisitions == [tuple(accounts[:100]), tuple(accounts[100:])]  # two calls, both at once
    assert a.path.max_in_flight == 2
    calls_before = len(a.path.calls)
    await run(clock, [a], 15.0)
    renews = len(a.path.calls) - calls_before
    assert renews == 200 * 3  # one small transaction per account per ttl/3, nothing else


async def test_a_failing_listener_does_not_stop_the_loop(clock: FakeClock, store: MemoryLeaseStore) -> None:
    class Broken(Recorder):
        def on_acquired(self, account: str, epoch: int) -> None:
            raise RuntimeError("supervisor bug")

    elector = LeaseElector(store=store, holder="conn-a", config=CONFIG, clock=clock, listener=Broken())
    elector.set_claims({"acct": 0.0, "other": 0.0})
    for _ in range(3):
        elector.step()
        await elector.drain()
    assert elector.held() == {"acct": 1, "other": 1}


async def test_the_run_loop_acquires_renews_and_stops(store: MemoryLeaseStore) -> None:
    class StopAfter(FakeClock):
        """Sleeping advances fake time; past 60 s it sets `stop`."""

        def __init__(self) -> None:
            super().__init__()
            self.stop = asyncio.Event()
            self.start = self.monotonic()

        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds)
            if self.monotonic() - self.start > 60:
                self.stop.set()

    clock = StopAfter()
    store.server_clock = clock
    heard = Recorder()
    elector = LeaseElector(store=store, holder="conn-a", config=CONFIG, clock=clock, listener=heard)
    elector.set_claims({"acct": 0.0})
    await asyncio.wait_for(elector.run(clock.stop), timeout=30)
    assert heard.events == [("acquired", "acct", 1)]
    record = (await store.get("acct")).record
    assert record is not None and record.holder == "conn-a"
    assert (
        clock.now() - record.renewed_at
    ).total_seconds() <= CONFIG.renew_interval_s + CONFIG.retry_period_s


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"": 0.0}, "account"),
        ({"a/b": 0.0}, "account"),
        ({"acct": -1.0}, "delay"),
        ({"acct": math.nan}, "delay"),
    ],
)
def test_bad_claims_are_refused(
    clock: FakeClock, store: MemoryLeaseStore, claims: dict[str, float], message: str
) -> None:
    elector = LeaseElector(store=store, holder="conn-a", config=CONFIG, clock=clock, listener=Recorder())
    with pytest.raises(LeaseError, match=message):
        elector.set_claims(claims)


def test_a_bad_holder_id_is_refused(clock: FakeClock, store: MemoryLeaseStore) -> None:
    with pytest.raises(LeaseError, match="holder"):
        LeaseElector(store=store, holder="a/b", config=CONFIG, clock=clock, listener=Recorder())


async def test_the_loop_leaves_an_account_alone_while_it_is_being_released(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    a.path.gate = asyncio.Event()
    releasing = asyncio.create_task(a.elector.release("acct"))
    await asyncio.sleep(0)
    a.elector.set_claims({"acct": 0.0})  # the next plan wants it again meanwhile
    clock.advance(CONFIG.renew_interval_s)  # a renewal would be due
    a.elector.step()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [c[0] for c in a.path.calls] == [
        "get_many",
        "try_acquire_many",
        "release_many",
    ]  # nothing raced it
    a.path.gate.set()
    assert await releasing
    a.path.gate = None
    await run(clock, [a], 0.5)
    assert a.elector.held() == {"acct": 2}  # taken again, cleanly, at the next epoch


async def test_releases_queued_behind_one_in_flight_go_out_together(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    """A handoff of hundreds of accounts: each waits for at most the commit in flight and its own."""
    a = Host("conn-a", store, clock)
    a.elector.set_claims(dict.fromkeys(["a", "b", "c", "d"], 0.0))
    await run(clock, [a], 1.0)
    leaving = Shown(AccountStatus.UNATTENDED, "released by conn-a")
    a.path.gate = asyncio.Event()
    first = asyncio.create_task(a.elector.release("a", leaving))
    for _ in range(3):
        await asyncio.sleep(0)
    rest = [asyncio.create_task(a.elector.release(x, leaving)) for x in "bcd"]
    for _ in range(3):
        await asyncio.sleep(0)
    a.path.gate.set()
    assert await first and all(await asyncio.gather(*rest))
    releases = [accounts for name, accounts in a.path.calls if name == "release_many"]
    assert releases == [("a",), ("b", "c", "d")]
    assert [(acc, s.status) for acc, s in store.shown[-4:]] == [(x, AccountStatus.UNATTENDED) for x in "abcd"]
    assert a.elector.held() == {}


async def test_closing_the_elector_answers_every_queued_release(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a = Host("conn-a", store, clock)
    a.elector.set_claims(dict.fromkeys(["a", "b"], 0.0))
    await run(clock, [a], 1.0)
    a.path.gate = asyncio.Event()  # the store never answers
    releasing = [asyncio.create_task(a.elector.release(x)) for x in "ab"]
    for _ in range(3):
        await asyncio.sleep(0)
    await a.elector.close()
    assert await asyncio.gather(*releasing) == [None, None]
    assert (await store.get("a")).holder() == "conn-a"  # left to expire after its TTL


async def test_a_clean_hint_overtakes_a_poll_read_still_out(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    """b's poll read went out before a released the lease, and answers late ("held by a").
    A clean hint for it is not held up by that read: b takes the lease at once, and the
    read's late answer changes nothing (no loss, no second acquisition)."""
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0, "other": 0.0})
    await run(clock, [a], 1.0)
    answer = asyncio.Event()
    b.path = SlowAnswers(store, answer)
    b.elector.store = b.path
    b.elector.set_claims({"acct": 0.0, "other": 0.0})
    b.elector.step()  # the poll reads both leases (a's); the answer is slow
    for _ in range(3):
        await asyncio.sleep(0)
    released = await a.elector.release("acct")
    assert released is not None
    b.elector.learn([released])  # the clean hint, while the read is out
    b.elector.step()
    for _ in range(5):
        await asyncio.sleep(0)
    assert b.elector.held() == {"acct": 2}  # taken before the read answered
    answer.set()
    await b.elector.drain()
    await b.step()
    assert b.elector.held() == {"acct": 2}
    assert b.heard.events == [("acquired", "acct", 2)]
    assert b.elector.known()["other"].view.holder() == "conn-a"  # type: ignore[union-attr]
    assert b.path.calls == [
        ("get_many", ("acct", "other")),
        ("learn", ("acct",)),
        ("try_acquire_many", ("acct",)),
    ]


async def test_a_failed_poll_read_does_not_delay_a_hint_that_overtook_it(
    clock: FakeClock, store: MemoryLeaseStore
) -> None:
    a, b = Host("conn-a", store, clock), Host("conn-b", store, clock)
    a.elector.set_claims({"acct": 0.0})
    await run(clock, [a], 1.0)
    failing = asyncio.Event()

    class FailingLate(FlakyStore):
        async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
            self.calls.append(("get_many", tuple(accounts)))
            await failing.wait()
            raise ConnectionError("the read timed out")

    b.path = FailingLate(store)
    b.elector.store = b.path
    b.elector.set_claims({"acct": 0.0})
    b.elector.step()
    await asyncio.sleep(0)
    released = await a.elector.release("acct")
    assert released is not None
    b.elector.learn([released])
    failing.set()  # the read fails before b's next step: the hint still stands, no retry pause
    await b.elector.drain()
    await b.step()
    assert b.elector.held() == {"acct": 2}
