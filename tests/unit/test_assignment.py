"""Assignment by table: spread, capacity, head start, a host dying, a host joining with bounded handoffs."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from connector.assignment import (
    AssignmentConfig,
    ConnectorLiveness,
    Plan,
    ReleaseReason,
    plan,
    rank,
    targets,
)
from connector.bootstrap import heartbeat_ttl_ms
from connector.lease_record import LeaseError
from connector.registry_record import ConnectorInfo, ConnectorRecord, RegistryView

CONFIG = AssignmentConfig(head_start_s=3.0, handoffs_per_minute=6)
ACCOUNTS = [f"acct-{i:03d}" for i in range(300)]


def plan_for(
    me: str,
    live: Mapping[str, int],
    desired: Iterable[str] = ACCOUNTS,
    held: Iterable[str] = (),
    *,
    handoffs: Mapping[str, float] | None = None,
    now: float = 1000.0,
    given_up: Mapping[str, float] | None = None,
) -> Plan:
    return plan(
        me,
        live=live,
        desired=desired,
        held=held,
        handoffs=handoffs or {},
        now=now,
        config=CONFIG,
        given_up=given_up,
    )


def releases(p: Plan, reason: ReleaseReason) -> list[str]:
    return [r.account for r in p.releases if r.reason is reason]


# ---- spread


def test_accounts_are_spread_over_live_connectors_and_each_claimed_once_at_once() -> None:
    live = {"a": 1000, "b": 1000, "c": 1000}
    plans = {c: plan_for(c, live) for c in live}
    immediate = Counter(a for p in plans.values() for a, delay in p.claims.items() if delay == 0)
    assert set(immediate) == set(ACCOUNTS) and set(immediate.values()) == {1}
    per_host = Counter(plans["a"].targets.values())
    assert all(70 <= per_host[c] <= 130 for c in live), per_host  # about 100 each
    assert all(p.targets == plans["a"].targets for p in plans.values())  # every host computes the same


def test_the_plan_does_not_depend_on_input_order() -> None:
    live = {"a": 150, "b": 150, "c": 150}
    shuffled = ACCOUNTS[:]
    random.Random(7).shuffle(shuffled)
    reordered = dict(reversed(list(live.items())))
    assert plan_for("a", live) == plan_for("a", reordered, desired=shuffled)


# ---- capacity


@pytest.mark.parametrize(
    ("capacities", "expected"),
    [
        ({"a": 2, "b": 10}, {"a": 2, "b": 6}),
        ({"a": 0, "b": 10}, {"b": 8}),
        ({"a": 3, "b": 3}, {"a": 3, "b": 3, None: 2}),  # the fleet is full: two wait
        ({"a": 8, "b": 8}, None),  # room to spare: pure rendezvous
    ],
)
def test_capacity_is_respected(capacities: dict[str, int], expected: dict[str | None, int] | None) -> None:
    accounts = ACCOUNTS[:8]
    chosen = targets(accounts, capacities)
    if expected is None:
        assert chosen == {a: rank(a, capacities)[0] for a in accounts}
    else:
        assert Counter(chosen.values()) == expected
    for connector, capacity in capacities.items():
        claims = plan_for(connector, capacities, desired=accounts).claims
        assert len(claims) <= capacity


def test_accounts_still_held_here_for_a_deferred_handoff_use_up_room() -> None:
    live = {"a": 3, "b": 1000}
    chosen = targets(ACCOUNTS[:40], live)
    elsewhere = [acc for acc in ACCOUNTS[:40] if chosen[acc] == "b"][:2]
    here = [acc for acc in ACCOUNTS[:40] if chosen[acc] == "a"]
    spent = {f"old-{i}": 999.0 for i in range(CONFIG.handoffs_per_minute)}
    p = plan_for("a", live, desired=ACCOUNTS[:40], held=elsewhere, handoffs=spent)
    assert p.deferred_handoffs == 2
    assert len(here) == 3
    assert len(p.claims) == 1


def test_nobody_claims_an_account_the_fleet_has_no_room_for() -> None:
    live = {"a": 3, "b": 3}
    waiting = [a for a, c in targets(ACCOUNTS[:8], live).items() if c is None]
    for connector in live:
        assert not set(plan_for(connector, live, desired=ACCOUNTS[:8]).claims) & set(waiting)


# ---- head start


def test_the_preferred_claims_at_once_the_runner_up_after_a_head_start_the_rest_not_at_all() -> None:
    live = {"a": 1000, "b": 1000, "c": 1000, "d": 1000}
    plans = {c: plan_for(c, live, desired=ACCOUNTS[:40]) for c in live}
    for account in ACCOUNTS[:40]:
        order = rank(account, live)
        delays = {c: plans[c].claims.get(account) for c in live}
        assert delays == {order[0]: 0.0, order[1]: CONFIG.head_start_s, order[2]: None, order[3]: None}


def test_a_runner_up_without_room_does_not_claim() -> None:
    live = {"a": 1000, "b": 1000}
    account = ACCOUNTS[0]
    runner_up = rank(account, live)[1]
    own = [a for a in ACCOUNTS[1:] if rank(a, live)[0] == runner_up][:2]  # held, and preferred there
    desired = [account, *own]
    assert plan_for(runner_up, {**live, runner_up: 3}, desired=desired, held=own).claims == {account: 3.0}
    assert plan_for(runner_up, {**live, runner_up: 2}, desired=desired, held=own).claims == {}


# ---- a host dying


def test_when_a_host_dies_only_its_accounts_move_and_they_are_claimed_at_once() -> None:
    live = {"a": 1000, "b": 1000, "c": 1000}
    before = targets(ACCOUNTS, live)
    del live["c"]
    after = targets(ACCOUNTS, live)
    moved = {a for a in ACCOUNTS if before[a] != after[a]}
    assert moved == {a for a in ACCOUNTS if before[a] == "c"}
    for account in moved:
        survivor = after[account]
        assert survivor is not None
        assert plan_for(survivor, live).claims[account] == 0.0


def test_before_the_registry_notices_the_runner_up_already_claims_the_dead_hosts_accounts() -> None:
    live = {"a": 1000, "b": 1000, "c": 1000}  # c died, its heartbeat has not expired yet
    c_accounts = [a for a, t in targets(ACCOUNTS, live).items() if t == "c"]
    claimed = {a: d for host in ("a", "b") for a, d in plan_for(host, live).claims.items() if a in c_accounts}
    assert set(claimed) == set(c_accounts)
    assert set(claimed.values()) == {CONFIG.head_start_s}


# ---- a host joining: gentle and bounded


def test_a_joining_host_gets_its_share_by_bounded_handoffs() -> None:
    accounts = ACCOUNTS[:60]
    a_holds = set(accounts)  # a was alone
    live = {"a": 1000, "c": 1000}
    joining = plan_for("a", live, desired=accounts, held=a_holds)
    to_c = [acc for acc in accounts if joining.targets[acc] == "c"]
    assert 15 <= len(to_c) <= 45
    handed = releases(joining, ReleaseReason.HANDOFF)
    assert len(handed) == CONFIG.handoffs_per_minute
    assert joining.deferred_handoffs == len(to_c) - CONFIG.handoffs_per_minute
    assert all(r.to == "c" for r in joining.releases)
    c_plan = plan_for("c", live, desired=accounts)
    assert {acc for acc, d in c_plan.claims.items() if d == 0} == set(to_c)


@dataclass
class Fleet:
    """Minute-by-minute rebalancing: plans, clean handoffs, acquisitions by the preferred host."""

    live: dict[str, int]
    held: dict[str, set[str]]
    handoffs: dict[str, dict[str, float]] = field(default_factory=dict)

    def minute(self, t: float, desired: list[str]) -> int:
        moved = 0
        for host in sorted(self.live):
            mine = self.handoffs.setdefault(host, {})
            p = plan(
                host,
                live=self.live,
                desired=desired,
                held=self.held[host],
                handoffs=mine,
                now=t,
                config=CONFIG,
            )
            for release in p.releases:
                self.held[host].discard(release.account)
                mine[release.account] = t
                if release.to is not None:
                    self.held[release.to].add(release.account)  # the preferred host takes it at once
                    moved += 1
        return moved


def test_rebalancing_after_a_join_never_exceeds_the_budget_and_converges() -> None:
    accounts = ACCOUNTS[:90]
    fleet = Fleet(live={"a": 1000, "b": 1000, "c": 1000}, held={"a": set(), "b": set(), "c": set()})
    two = targets(accounts, {"a": 1000, "b": 1000})
    for account, host in two.items():
        assert host is not None
        fleet.held[host].add(account)
    final = targets(accounts, fleet.live)
    to_move = sum(1 for a in accounts if two[a] != final[a])
    per_minute = []
    for minute in range(20):
        per_minute.append(fleet.minute(minute * 60.0 + 1.0, accounts))
    assert max(per_minute) <= CONFIG.handoffs_per_minute * 2  # two hosts hand off, each within its budget
    assert sum(per_minute) == to_move  # nothing moved twice, nothing moved needlessly
    assert all(fleet.held[h] == {a for a in accounts if final[a] == h} for h in fleet.live)
    assert per_minute.index(0) <= math.ceil(to_move / CONFIG.handoffs_per_minute) + 1


def test_a_handed_off_account_is_not_claimed_back_as_runner_up_within_the_minute() -> None:
    live = {"a": 1000, "c": 1000}
    account = next(a for a in ACCOUNTS if rank(a, live)[0] == "c")
    assert plan_for("a", live, desired=[account]).claims == {account: CONFIG.head_start_s}
    assert plan_for("a", live, desired=[account], handoffs={account: 990.0}, now=1000.0).claims == {}
    assert plan_for("a", live, desired=[account], handoffs={account: 900.0}, now=1000.0).claims != {}


@pytest.mark.parametrize(
    ("handed_off_at", "delay"),
    [
        (None, 0.0),  # never handed off: the preferred host takes it at once
        (990.0, CONFIG.taken_back_after_s),  # 10 s ago: the runner-up goes first
        (941.0, CONFIG.taken_back_after_s),  # just within the minute
        (940.0, 0.0),  # a minute ago: at once again
    ],
)
def test_the_preferred_host_takes_back_what_it_gave_up_after_the_runner_up(
    handed_off_at: float | None, delay: float
) -> None:
    """A `release` command hands off an account its host is preferred for: the runner-up's
    head start is shorter, so another host takes it; with no other host it comes back."""
    live = {"a": 1000, "c": 1000}
    account = next(a for a in ACCOUNTS if rank(a, live)[0] == "a")
    given_up = {} if handed_off_at is None else {account: handed_off_at}
    mine = plan_for("a", live, desired=[account], handoffs=given_up, given_up=given_up)
    assert mine.claims == {account: delay}
    runner_up = plan_for("c", live, desired=[account], now=1000.0).claims
    assert runner_up == {account: CONFIG.head_start_s} and CONFIG.head_start_s < CONFIG.taken_back_after_s
    alone = plan_for("a", {"a": 1000}, desired=[account], handoffs=given_up, given_up=given_up).claims
    assert alone == {account: delay}, "with no other host it is taken back all the same"


def test_an_account_handed_off_to_a_host_that_died_is_taken_at_once() -> None:
    """A rebalancing handoff (not a `release` command) to the preferred host, which then died:
    the giver, preferred now, takes it as soon as it is free (a kill -9 stays within TTL)."""
    live = {"a": 1000, "c": 1000}
    account = next(a for a in ACCOUNTS if rank(a, live)[0] == "c")
    assert plan_for("a", {"a": 1000}, desired=[account], handoffs={account: 990.0}).claims == {account: 0.0}


def test_spent_budget_defers_every_handoff() -> None:
    live = {"a": 1000, "c": 1000}
    recent = {f"old-{i}": 990.0 for i in range(CONFIG.handoffs_per_minute)}
    p = plan_for("a", live, held=ACCOUNTS, handoffs=recent, now=1000.0)
    assert releases(p, ReleaseReason.HANDOFF) == []
    assert p.deferred_handoffs > 0
    old = {f"old-{i}": 930.0 for i in range(CONFIG.handoffs_per_minute)}  # more than a minute ago
    assert (
        len(releases(plan_for("a", live, held=ACCOUNTS, handoffs=old, now=1000.0), ReleaseReason.HANDOFF))
        == 6
    )


# ---- releases that are not rebalancing


def test_accounts_no_longer_desired_are_released_whatever_the_budget() -> None:
    live = {"a": 1000}
    spent = {f"old-{i}": 999.0 for i in range(10)}
    p = plan_for("a", live, desired=ACCOUNTS[:5], held=ACCOUNTS[:12], handoffs=spent)
    assert releases(p, ReleaseReason.NOT_DESIRED) == ACCOUNTS[5:12]


def test_above_capacity_the_excess_goes_those_preferred_elsewhere_first() -> None:
    live = {"a": 3, "b": 1000}
    held = ACCOUNTS[:6]
    spent = {f"old-{i}": 999.0 for i in range(10)}  # no handoff budget left
    p = plan_for("a", live, desired=held, held=held, handoffs=spent)
    over = releases(p, ReleaseReason.OVER_CAPACITY)
    assert len(over) == 3
    kept = set(held) - set(over)
    preferred_here = {acc for acc in held if p.targets[acc] == "a"}
    assert preferred_here and preferred_here <= kept
    assert p.claims == {}


# ---- bad input


@pytest.mark.parametrize(
    ("me", "live", "message"),
    [
        ("z", {"a": 1}, "not among the live connectors"),
        ("a", {"a": -1}, "capacity of a"),
        ("a", {"a": 1, "b": 1.5}, "capacity of b"),
        ("a/b", {"a/b": 1}, "connector id"),
    ],
)
def test_bad_plan_input_is_refused(me: str, live: dict[str, int], message: str) -> None:
    with pytest.raises(LeaseError, match=message):
        plan_for(me, live)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head_start_s": -1.0}, "head start"),
        ({"head_start_s": math.nan}, "head start"),
        ({"handoffs_per_minute": -1}, "handoffs per minute"),
        ({"handoffs_per_minute": 1.5}, "handoffs per minute"),
        ({"taken_back_after_s": 3.0}, "must wait longer than the head start"),
        ({"taken_back_after_s": math.nan}, "must wait longer than the head start"),
    ],
)
def test_a_bad_config_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(LeaseError, match=message):
        AssignmentConfig(**kwargs)  # type: ignore[arg-type]


# ---- liveness of connectors


T0 = datetime(2026, 4, 1, tzinfo=UTC)


def heartbeat(cid: str, renewed_s: float, ttl_ms: int = 15_000, capacity: int = 100) -> ConnectorRecord:
    info = ConnectorInfo(cid, "host-" + cid, "0.1.0", capacity, 0, ttl_ms)
    return ConnectorRecord(info, started_at=T0, renewed_at=T0 + timedelta(seconds=renewed_s))


def listing(*records: ConnectorRecord, server_s: float | None) -> RegistryView:
    return RegistryView(records, None if server_s is None else T0 + timedelta(seconds=server_s))


@dataclass(frozen=True)
class LiveRow:
    name: str
    listings: list[tuple[float, RegistryView]]  # (local monotonic time of the listing, listing)
    alive: set[str]


LIVE_ROWS = [
    LiveRow("fresh by server age", [(0.0, listing(heartbeat("a", 10), server_s=20))], {"a"}),
    LiveRow("stale by server age", [(0.0, listing(heartbeat("a", 0), server_s=15))], set()),
    LiveRow("its own TTL counts", [(0.0, listing(heartbeat("a", 0, ttl_ms=60_000), server_s=30))], {"a"}),
    LiveRow(
        "no server time: alive at first sight", [(0.0, listing(heartbeat("a", 0), server_s=None))], {"a"}
    ),
    LiveRow(
        "no server time: unchanged for a TTL here",
        [(0.0, listing(heartbeat("a", 0), server_s=None)), (15.0, listing(heartbeat("a", 0), server_s=None))],
        set(),
    ),
    LiveRow(
        "no server time: renewed in between",
        [(0.0, listing(heartbeat("a", 0), server_s=None)), (15.0, listing(heartbeat("a", 5), server_s=None))],
        {"a"},
    ),
    LiveRow(
        "server says fresh but unchanged here for a TTL",
        [(0.0, listing(heartbeat("a", 0), server_s=1)), (16.0, listing(heartbeat("a", 0), server_s=1))],
        set(),
    ),
    LiveRow(
        "one of two gone",
        [(0.0, listing(heartbeat("a", 14), heartbeat("b", 2), server_s=17.5))],
        {"a"},
    ),
    LiveRow(
        "removed from the registry",
        [(0.0, listing(heartbeat("a", 0), server_s=1)), (1.0, listing(server_s=2))],
        set(),
    ),
]


@pytest.mark.parametrize("row", LIVE_ROWS, ids=[r.name for r in LIVE_ROWS])
def test_liveness(row: LiveRow) -> None:
    tracker = ConnectorLiveness()
    alive: dict[str, ConnectorRecord] = {}
    for now, view in row.listings:
        alive = tracker.observe(view, now)
    assert set(alive) == row.alive


def test_liveness_ignores_the_wall_clocks_of_hosts() -> None:
    """Moving every store time by a day changes nothing: only differences of store times count."""
    for shift in (timedelta(days=-1), timedelta(minutes=5)):
        rec = heartbeat("a", 10)
        moved = ConnectorRecord(rec.info, rec.started_at + shift, rec.renewed_at + shift)
        for server_s in (20.0, 24.9, 25.0, 30.0):
            plain = ConnectorLiveness().observe(listing(rec, server_s=server_s), 0.0)
            shifted = RegistryView((moved,), T0 + timedelta(seconds=server_s) + shift)
            assert set(plain) == set(ConnectorLiveness().observe(shifted, 0.0))


def test_capacities_feed_the_plan() -> None:
    view = listing(heartbeat("a", 10, capacity=5), heartbeat("b", 0, capacity=9), server_s=20)
    assert ConnectorLiveness().capacities(view, 0.0) == {"a": 5}


@pytest.mark.parametrize(
    ("lease_ttl_s", "placement_s", "expected_ms"),
    [(15.0, 2.0, 8_000), (6.0, 0.8, 6_000), (60.0, 2.0, 8_000), (60.0, 5.0, 20_000), (4.0, 2.0, 4_000)],
)
def test_the_heartbeat_outlives_four_beats_but_not_the_lease(
    lease_ttl_s: float, placement_s: float, expected_ms: int
) -> None:
    assert heartbeat_ttl_ms(lease_ttl_s, placement_s) == expected_ms
