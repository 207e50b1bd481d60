"""Two hosts, skewed and drifting clocks, a flaky network: never two holders beyond the deadline.

A small discrete-time simulation. True time is the simulation's; the store's
clock follows it exactly (the server). Each host has its own clock: a wall clock
minutes off, a monotonic clock with its own origin, and a rate that drifts a few
percent. Store calls take time each way; a host can be cut off, and a cut on the
way back loses the answer of a write that did happen.

Invariants, checked at every tick: no host goes on holding the lease past its
renew deadline (by its own clock) by more than a tick; at most one host holds it
with its deadline not yet passed; and that host is the holder at its epoch in
the store.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from connector.adapters.memory_leases import MemoryLeaseStore
from connector.lease import LeaseConfig
from connector.lease_loop import LeaseElector
from connector.lease_record import LeaseRecord, LeaseView
from connector.ports import Shown
from tests.unit.lease_helpers import Recorder, StoreDown

T = TypeVar("T")
CONFIG = LeaseConfig()
BASE = datetime(2026, 5, 1, tzinfo=UTC)
TICK = 0.1
ACCOUNT = "acct"


class Sim:
    """Simulated true time; coroutines wait on it with `until`."""

    def __init__(self) -> None:
        self.t = 0.0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def until(self, t: float) -> None:
        if t <= self.t:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (t, next(self._order), future))
        await future

    async def advance(self, dt: float) -> None:
        self.t += dt
        while self._waiters and self._waiters[0][0] <= self.t:
            heapq.heappop(self._waiters)[2].set_result(None)
        await settle()


async def settle() -> None:
    for _ in range(8):  # enough for a store call to move one stage on
        await asyncio.sleep(0)


class ServerClock:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def now(self) -> datetime:
        return BASE + timedelta(seconds=self.sim.t)

    def monotonic(self) -> float:
        return self.sim.t

    async def sleep(self, seconds: float) -> None:
        await self.sim.until(self.sim.t + seconds)


@dataclass
class HostClock:
    """A host's clock: wall `wall_offset_s` off, monotonic from `mono_origin`, running at `rate`."""

    sim: Sim
    rate: float = 1.0
    wall_offset_s: float = 0.0
    mono_origin: float = 0.0

    def now(self) -> datetime:
        return BASE + timedelta(seconds=self.wall_offset_s + self.sim.t * self.rate)

    def monotonic(self) -> float:
        return self.mono_origin + self.sim.t * self.rate

    async def sleep(self, seconds: float) -> None:
        await self.sim.until(self.sim.t + seconds / self.rate)


@dataclass
class Network:
    """One host's path to the store: cuts (true-time intervals) and one-way delays."""

    down: Sequence[tuple[float, float]] = ()
    delay_s: float = 0.05
    slow_answers: Sequence[tuple[float, float, float]] = ()  # (from, to, extra delay of answers)

    def is_down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.down)

    def answer_delay(self, t: float) -> float:
        return self.delay_s + sum(extra for a, b, extra in self.slow_answers if a <= t < b)


class SimPath:
    """A LeaseStore as one host sees it through its network."""

    def __init__(self, sim: Sim, store: MemoryLeaseStore, net: Network) -> None:
        self.sim, self.store, self.net = sim, store, net

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        await self.sim.until(self.sim.t + self.net.delay_s)
        if self.net.is_down(self.sim.t):
            raise StoreDown("request lost")
        result = await op()  # the store acts now, at true time
        await self.sim.until(self.sim.t + self.net.answer_delay(self.sim.t))
        if self.net.is_down(self.sim.t):
            raise StoreDown("answer lost")  # the write happened; the host does not know
        return result

    async def get(self, account: str) -> LeaseView:
        return await self._call(lambda: self.store.get(account))

    async def get_many(self, accounts: Sequence[str]) -> list[LeaseView]:
        return await self._call(lambda: self.store.get_many(accounts))

    def learn(self, views: Sequence[LeaseView]) -> None:
        self.store.learn(views)

    async def try_acquire(
        self, account: str, holder: str, ttl_ms: int, expected: LeaseRecord | None, shown: Shown | None = None
    ) -> LeaseView:
        return await self._call(lambda: self.store.try_acquire(account, holder, ttl_ms, expected, shown))

    async def try_acquire_many(
        self,
        claims: Sequence[tuple[str, LeaseRecord | None]],
        holder: str,
        ttl_ms: int,
        shown: Shown | None = None,
    ) -> list[LeaseView]:
        return await self._call(lambda: self.store.try_acquire_many(claims, holder, ttl_ms, shown))

    async def renew(self, account: str, holder: str, epoch: int, ttl_ms: int) -> LeaseView:
        return await self._call(lambda: self.store.renew(account, holder, epoch, ttl_ms))

    async def release(self, account: str, holder: str, epoch: int, shown: Shown | None = None) -> LeaseView:
        return await self._call(lambda: self.store.release(account, holder, epoch, shown))

    async def release_many(
        self, leases: Sequence[tuple[str, int]], holder: str, shown: Shown | None = None
    ) -> list[LeaseView]:
        return await self._call(lambda: self.store.release_many(leases, holder, shown))

    async def current_epoch(self, account: str) -> int:
        return await self._call(lambda: self.store.current_epoch(account))


@dataclass
class HostSpec:
    name: str
    clock: dict[str, float] = field(default_factory=dict)  # HostClock arguments
    net: Network = field(default_factory=Network)
    head_start_s: float = 0.0


@dataclass
class Outcome:
    authority_ticks: dict[str, int]
    epochs: int
    ticks: int
    heard: dict[str, list[tuple[str, str, int]]]
    takeover_gaps: list[float]  # store time from one holder's last renewal to another's acquisition


async def simulate(hosts: Sequence[HostSpec], seconds: float) -> Outcome:
    sim = Sim()
    store = MemoryLeaseStore(server_clock=ServerClock(sim))
    electors, clocks, heard = {}, {}, {}
    for spec in hosts:
        clocks[spec.name] = HostClock(sim, **spec.clock)
        heard[spec.name] = Recorder()
        electors[spec.name] = LeaseElector(
            store=SimPath(sim, store, spec.net),
            holder=spec.name,
            config=CONFIG,
            clock=clocks[spec.name],
            listener=heard[spec.name],
        )
        electors[spec.name].set_claims({ACCOUNT: spec.head_start_s})
    authority = dict.fromkeys(electors, 0)
    gaps: list[float] = []
    last: LeaseRecord | None = None
    ticks = round(seconds / TICK)
    for _ in range(ticks):
        await sim.advance(TICK)
        for elector in electors.values():
            elector.step()
        await settle()
        record = store.docs.get(ACCOUNT) and LeaseRecord.from_fields(ACCOUNT, store.docs[ACCOUNT])
        with_authority = []
        for name, elector in electors.items():
            local = elector.known().get(ACCOUNT)
            if local is None or local.held_epoch is None:
                continue
            overdue = clocks[name].monotonic() - (local.renewed_mono + CONFIG.renew_deadline_s)
            assert overdue <= TICK * 1.1, (
                f"t={sim.t:.1f}: {name} still holds {overdue:.2f} s past its deadline"
            )
            if overdue < 0:
                with_authority.append(name)
                assert record and (record.holder, record.epoch) == (name, local.held_epoch), (
                    f"t={sim.t:.1f}: {name} believes it holds epoch {local.held_epoch}, the store has {record}"
                )
        assert len(with_authority) <= 1, f"t={sim.t:.1f}: two holders with authority: {with_authority}"
        for name in with_authority:
            authority[name] += 1
        if record and last and record.holder not in (None, last.holder) and last.holder is not None:
            gaps.append((record.acquired_at - last.renewed_at).total_seconds())
        last = record or last
    for elector in electors.values():
        await elector.close()  # calls may be waiting for simulated time that will not come
    return Outcome(
        authority_ticks=authority,
        epochs=last.epoch if last else 0,
        ticks=ticks,
        heard={n: r.events for n, r in heard.items()},
        takeover_gaps=gaps,
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    a: HostSpec
    b: HostSpec
    seconds: float = 120.0


CUT_A = Network(down=[(20.0, 60.0)])
SCENARIOS = [
    Scenario("wall clocks minutes apart", HostSpec("a", {"wall_offset_s": 180}, CUT_A),
             HostSpec("b", {"wall_offset_s": -300})),
    Scenario("monotonic origins far apart", HostSpec("a", {"mono_origin": 5.0}, CUT_A),
             HostSpec("b", {"mono_origin": 86_400.0 * 30})),
    Scenario("holder slow 3%, standby fast 3%", HostSpec("a", {"rate": 0.97}, CUT_A), HostSpec("b", {"rate": 1.03})),
    Scenario("holder fast 3%, standby slow 3%", HostSpec("a", {"rate": 1.03}, CUT_A), HostSpec("b", {"rate": 0.97})),
    Scenario("both drifting, skewed, with a head start", HostSpec("a", {"rate": 0.98, "wall_offset_s": -3600}, CUT_A),
             HostSpec("b", {"rate": 1.02, "wall_offset_s": 600}, head_start_s=3.0)),
    Scenario("answers of the holder delayed 6 s, then cut",
             HostSpec("a", {"rate": 0.98}, Network(down=[(27.0, 70.0)], slow_answers=[(18.0, 27.0, 6.0)])),
             HostSpec("b", {"rate": 1.02})),
    Scenario("answers of a slow holder delayed 4.9 s, fast standby, then cut",
             HostSpec("a", {"rate": 0.97}, Network(down=[(40.0, 80.0)], slow_answers=[(18.0, 40.0, 4.85)])),
             HostSpec("b", {"rate": 1.03})),
    Scenario("both cut in turns", HostSpec("a", {}, Network(down=[(20.0, 40.0), (70.0, 90.0)])),
             HostSpec("b", {"rate": 1.02}, Network(down=[(45.0, 65.0)]))),
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_never_two_holders_and_a_prompt_takeover(scenario: Scenario) -> None:
    out = await simulate([scenario.a, scenario.b], scenario.seconds)
    assert out.epochs >= 2, "the standby never took over: the scenario tested nothing"
    assert ("deadline_missed", ACCOUNT, 1) in out.heard["a"]
    assert out.takeover_gaps, "no takeover seen"
    for gap in out.takeover_gaps:
        assert CONFIG.ttl_s / 1.03 <= gap <= CONFIG.ttl_s + 4.0
    held = sum(out.authority_ticks.values()) / out.ticks
    assert held > 0.6, f"the lease was held only {held:.0%} of the time"


@pytest.mark.parametrize("seed", range(12))
async def test_random_faults_never_give_two_holders(seed: int) -> None:
    rng = random.Random(seed)

    def spec(name: str) -> HostSpec:
        cuts = sorted((s, s + rng.uniform(1.0, 30.0)) for s in (rng.uniform(0, 280) for _ in range(4)))
        slow = [
            (s, s + rng.uniform(1.0, 10.0), rng.uniform(0.5, 7.0))
            for s in (rng.uniform(0, 280) for _ in range(2))
        ]
        return HostSpec(
            name,
            {
                "rate": rng.uniform(0.97, 1.03),
                "wall_offset_s": rng.uniform(-900, 900),
                "mono_origin": rng.uniform(0, 1e6),
            },
            Network(down=cuts, delay_s=rng.uniform(0.01, 0.4), slow_answers=slow),
            head_start_s=rng.choice([0.0, 0.0, 3.0]),
        )

    out = await simulate([spec("a"), spec("b")], 300.0)
    assert sum(out.authority_ticks.values()) > 0, "nobody ever held the lease: the run tested nothing"
    for gap in out.takeover_gaps:
        assert gap >= CONFIG.ttl_s / 1.03  # a standby whose clock runs 3% fast waits 3% less
