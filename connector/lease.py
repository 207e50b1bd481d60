"""Fenced per-account leases: who drives an account, modelled on client-go leader election.

Two hosts driving one WhatsApp session get it replaced or logged out, so exactly
one connector may hold an account. `decide` is the pure rule for one account;
`LeaseElector` (connector/lease_loop.py) is the thin loop that acts on it for many
accounts at once.

Time: a lease's age comes from the store's own clock (`renewed_at` against the
server time of the read) or from this host's monotonic clock (how long a record
has stayed unchanged, client-go's observedTime); both are safe, and the earlier
of the two counts. Two hosts' wall clocks are never compared. A holder stops its
worker when it has not renewed within `renew_deadline_s` of *sending* its last
successful renewal, which is before any other host can see the lease expire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from connector.lease_record import LeaseError, LeaseView

DEFAULT_TTL_S = 15.0


@dataclass(frozen=True)
class LeaseConfig:
    """Timing of one connector's leases; for a 15 s TTL: renew every 5 s, deadline 10 s, retry 2 s."""

    ttl_s: float = DEFAULT_TTL_S
    renew_deadline_s: float = DEFAULT_TTL_S * 2 / 3
    retry_period_s: float = 2.0
    renew_interval_s: float = DEFAULT_TTL_S / 3

    def __post_init__(self) -> None:
        values = (self.ttl_s, self.renew_deadline_s, self.retry_period_s, self.renew_interval_s)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise LeaseError(f"lease timings must be positive numbers, got {values}")
        if not self.ttl_s > self.renew_deadline_s > self.retry_period_s:
            raise LeaseError(
                f"lease timings need ttl ({self.ttl_s} s) > renew deadline ({self.renew_deadline_s} s)"
                f" > retry period ({self.retry_period_s} s)"
            )
        if self.renew_interval_s >= self.renew_deadline_s:
            raise LeaseError(
                f"lease renew interval ({self.renew_interval_s} s) must be shorter than"
                f" the renew deadline ({self.renew_deadline_s} s)"
            )

    @classmethod
    def for_ttl(cls, ttl_s: float) -> LeaseConfig:
        """client-go's proportions (15 / 10 / 2) scaled to `ttl_s`, renewing every ttl/3."""
        return cls(
            ttl_s=ttl_s,
            renew_deadline_s=ttl_s * 2 / 3,
            retry_period_s=ttl_s * 2 / 15,
            renew_interval_s=ttl_s / 3,
        )

    @property
    def ttl_ms(self) -> int:
        return round(self.ttl_s * 1000)


class Action(StrEnum):
    WAIT = "wait"  # nothing to do before `Decision.at`
    READ = "read"  # look at the lease (we want it but do not know its state)
    ACQUIRE = "acquire"  # take it: missing, released, expired or our own
    RENEW = "renew"
    LOST = "lost"  # we held it, the store shows another holder or epoch
    DEADLINE_MISSED = "deadline_missed"  # we held it but could not renew in time: stop the worker


@dataclass(frozen=True)
class Local:
    """What this connector knows of one account's lease; times are its own monotonic clock."""

    view: LeaseView | None = None  # the newest store answer (None: never read)
    seen_mono: float = 0.0  # when `view.record`, as it is now, was first seen
    read_mono: float = 0.0  # when `view` arrived
    held_epoch: int | None = None  # the epoch we hold, None when we hold nothing
    renewed_mono: float = 0.0  # when the last successful acquire or renew was sent
    failed_mono: float | None = None  # when the last failed attempt was sent (retry pacing)


@dataclass(frozen=True)
class Decision:
    action: Action
    at: float  # for WAIT: when to decide again; otherwise now


def free_from(local: Local, me: str) -> float | None:
    """Monotonic time from which the lease may be taken by `me` (None: never read).

    Missing, released and our own (a previous process of this connector) leases
    are free since we saw them. Another holder's lease is free at the earlier of
    two safe estimates of its expiry: `seen_mono + ttl` (unchanged for a whole
    TTL here), and the server's age of the record carried over to our clock
    (arrival time is after the server read, so this errs late, never early).
    """
    view = local.view
    if view is None:
        return None
    record = view.record
    if record is None or record.holder is None or record.holder == me:
        return local.seen_mono
    by_observation = local.seen_mono + record.ttl_s
    if view.server_now is None:
        return by_observation
    age = (view.server_now - record.renewed_at).total_seconds()
    return min(by_observation, local.read_mono + record.ttl_s - age)


def decide(local: Local, me: str, claim_delay: float | None, config: LeaseConfig, now: float) -> Decision:
    """What to do now for one account.

    `claim_delay` is None when we should not take the account; otherwise how long
    it must have been free before we take it (0 for the preferred connector, a
    head start for the others, see connector/assignment.py). A lease we hold is
    renewed whatever the claim: giving it up is an explicit, clean release.
    """
    retry_at = -math.inf if local.failed_mono is None else local.failed_mono + config.retry_period_s
    if local.held_epoch is not None:
        record = None if local.view is None else local.view.record
        if record is None or record.holder != me or record.epoch != local.held_epoch:
            return Decision(Action.LOST, now)
        deadline = local.renewed_mono + config.renew_deadline_s
        if now >= deadline:
            return Decision(Action.DEADLINE_MISSED, now)
        due = max(local.renewed_mono + config.renew_interval_s, retry_at)
        return Decision(Action.RENEW, now) if now >= due else Decision(Action.WAIT, min(due, deadline))
    if claim_delay is None:
        return Decision(Action.WAIT, math.inf)
    free = free_from(local, me)
    if free is None:
        return Decision(Action.READ, now) if now >= retry_at else Decision(Action.WAIT, retry_at)
    take_at = max(free + claim_delay, retry_at)
    if now >= take_at:
        return Decision(Action.ACQUIRE, now)
    poll = config.retry_period_s if claim_delay == 0 else config.renew_interval_s
    read_at = max(local.read_mono + poll, retry_at)
    if now >= read_at:
        return Decision(Action.READ, now)
    return Decision(Action.WAIT, min(take_at, read_at))
