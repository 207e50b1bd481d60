"""Which accounts this connector should hold: pure, the same answer on every host that sees the same.

Accounts with `desired: active` are spread over the live connectors by
rendezvous hashing (each account ranks the connectors by a hash of the pair),
bounded by each connector's capacity: in account order, an account goes to the
best-ranked connector that still has room. A connector joining or leaving moves
only the accounts it gains or loses.

The lease decides who really drives an account; the plan only says what to try:
- the preferred connector claims a free account at once, the runner-up only after
  a head start, so the preferred one normally wins but an account never waits on
  a connector that is slow or seen differently;
- an account held here but preferred elsewhere is handed off (final backup,
  release, the new holder restores), at most `handoffs_per_minute` per connector;
- held accounts no longer desired are released; above capacity, the excess goes;
- an account this connector gave up on a `release` command in the last minute is
  taken back as the preferred one only after `taken_back_after_s` free, later than the
  runner-up's head start: another host goes first, and the account never waits on
  nobody. (Only those: an account handed off to its preferred host, which then died,
  is taken at once.)

`ConnectorLiveness` judges which registry records are alive the way leases are
judged (connector/lease.py): server age or local observation, never wall clocks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from connector.lease_record import LeaseError, check_id
from connector.registry_record import ConnectorRecord, RegistryView

HANDOFF_WINDOW_S = 60.0


@dataclass(frozen=True)
class AssignmentConfig:
    head_start_s: float = 3.0  # how long the runner-up lets the preferred connector go first
    handoffs_per_minute: int = 6  # rebalancing handoffs started by one connector per minute
    taken_back_after_s: float = 10.0  # free this long before retaking what a release command gave up

    def __post_init__(self) -> None:
        if not self.head_start_s >= 0:
            raise LeaseError(f"head start must be >= 0 s, got {self.head_start_s!r}")
        if not self.taken_back_after_s > self.head_start_s:
            raise LeaseError(
                f"taking an account back ({self.taken_back_after_s!r} s) must wait longer than"
                f" the head start ({self.head_start_s!r} s)"
            )
        if not isinstance(self.handoffs_per_minute, int) or self.handoffs_per_minute < 0:
            raise LeaseError(f"handoffs per minute must be an integer >= 0, got {self.handoffs_per_minute!r}")


def rank(account: str, connectors: Iterable[str]) -> list[str]:
    """The connectors in this account's order of preference (highest rendezvous weight first)."""

    def weight(connector: str) -> bytes:
        return hashlib.blake2b(f"{connector}\x00{account}".encode(), digest_size=8).digest()

    return sorted(connectors, key=lambda c: (weight(c), c), reverse=True)


def targets(accounts: Iterable[str], capacities: Mapping[str, int]) -> dict[str, str | None]:
    """Each account's preferred connector with room; None when every connector is full."""
    room = dict(capacities)
    chosen: dict[str, str | None] = {}
    for account in sorted(set(accounts)):
        best = next((c for c in rank(account, room) if room[c] > 0), None)
        chosen[account] = best
        if best is not None:
            room[best] -= 1
    return chosen


class ReleaseReason(StrEnum):
    NOT_DESIRED = "not_desired"  # desired is no longer active
    OVER_CAPACITY = "over_capacity"
    HANDOFF = "handoff"  # another live connector is preferred


@dataclass(frozen=True)
class Release:
    account: str
    reason: ReleaseReason
    to: str | None = None  # for a handoff: the preferred connector


@dataclass(frozen=True)
class Plan:
    claims: dict[str, float]  # account -> how long it must be free before we take it
    releases: tuple[Release, ...]
    targets: dict[str, str | None]
    deferred_handoffs: int  # handoffs the per-minute budget held back


def plan(
    me: str,
    *,
    live: Mapping[str, int],
    desired: Iterable[str],
    held: Iterable[str],
    handoffs: Mapping[str, float],
    now: float,
    config: AssignmentConfig,
    given_up: Mapping[str, float] | None = None,
) -> Plan:
    """What `me` should claim and release, given the live connectors and their capacities.

    `handoffs` maps the accounts this connector handed off to when it did
    (monotonic); those of the last minute count against the budget, and are not
    claimed back as runner-up meanwhile (no ping-pong with the new holder). `given_up`
    maps the accounts released on a `release` command to when: those of the last minute
    are claimed as the preferred one only after `taken_back_after_s` free.
    """
    check_id("connector id", me)
    if me not in live:
        raise LeaseError(f"connector {me} is not among the live connectors: heartbeat first")
    for connector, capacity in live.items():
        if not isinstance(capacity, int) or capacity < 0:
            raise LeaseError(f"capacity of {connector} must be an integer >= 0, got {capacity!r}")
    wanted, mine = set(desired), set(held)
    chosen = targets(wanted, live)
    releases = [Release(a, ReleaseReason.NOT_DESIRED) for a in sorted(mine - wanted)]
    keep = sorted(mine & wanted)
    movable = [a for a in keep if chosen[a] not in (me, None)]
    recent = _within_the_window(handoffs, now)
    returned = _within_the_window(given_up or {}, now)
    budget = max(0, config.handoffs_per_minute - len(recent))
    for account in movable[:budget]:
        releases.append(Release(account, ReleaseReason.HANDOFF, chosen[account]))
    keep = [a for a in keep if a not in movable[:budget]]
    excess = len(keep) - live[me]
    if excess > 0:  # drop the ones preferred elsewhere first
        dropped = sorted(keep, key=lambda a: (chosen[a] == me, a))[:excess]
        releases.extend(Release(a, ReleaseReason.OVER_CAPACITY) for a in dropped)
        keep = [a for a in keep if a not in dropped]
    room = live[me] - len(keep)
    claims: dict[str, float] = {}
    free = sorted(wanted - mine)
    for account in free:
        if room > 0 and chosen[account] == me:
            delay = config.taken_back_after_s if account in returned else 0.0
            claims[account], room = delay, room - 1
    for account in free:
        target = chosen[account]
        if (
            room > 0
            and target not in (me, None)
            and account not in recent
            and _runner_up(account, live, target) == me
        ):
            claims[account], room = config.head_start_s, room - 1
    return Plan(claims, tuple(releases), chosen, len(movable) - min(budget, len(movable)))


def _within_the_window(moments: Mapping[str, float], now: float) -> set[str]:
    return {a for a, t in moments.items() if now - HANDOFF_WINDOW_S < t <= now}


def _runner_up(account: str, live: Mapping[str, int], target: str | None) -> str | None:
    return next((c for c in rank(account, live) if c != target and live[c] > 0), None)


class ConnectorLiveness:
    """Which heartbeats are alive, judged from successive listings and this host's monotonic clock.

    A record is dead once either estimate says so: the server's age of
    `renewed_at` at the listing, carried over to our clock, or the record having
    stayed unchanged here for its TTL. Invalid records are never alive.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[ConnectorRecord, float]] = {}

    def observe(self, view: RegistryView, now: float) -> dict[str, ConnectorRecord]:
        """Feed one listing (read at monotonic `now`); returns the live records by connector id."""
        current = {r.connector_id: r for r in view.records}
        self._seen = {
            cid: (rec, self._seen[cid][1] if cid in self._seen and self._seen[cid][0] == rec else now)
            for cid, rec in current.items()
        }
        live = {}
        for cid, (rec, seen) in self._seen.items():
            ttl = rec.info.ttl_ms / 1000
            expires = seen + ttl
            if view.server_now is not None:
                expires = min(expires, now + ttl - (view.server_now - rec.renewed_at).total_seconds())
            if now < expires:
                live[cid] = rec
        return live

    def capacities(self, view: RegistryView, now: float) -> dict[str, int]:
        """`observe`, as the connector -> capacity map `plan` takes."""
        return {cid: rec.info.capacity for cid, rec in self.observe(view, now).items()}
