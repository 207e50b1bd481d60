"""Every threshold of the policy, in one frozen object.

The functions build it from firebase-functions params at call time
(control/params.py); tests build it directly. Defaults are DESIGN.md's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

from policy.errors import PolicyError


@dataclass(frozen=True)
class PolicyConfig:
    """Thresholds; durations are timedeltas, counts plain ints.

    Attributes:
        max_strikes: logouts retried from a backup within `strike_window` before a wipe.
        strike_window: how long strikes add up.
        transient_after_restart: a 401 this soon after a 515 is a passing fault.
        stable_period: connected this long clears strikes and the replaced count.
        max_replaced_reconnects: reconnects after `stream_replaced` before `replaced`.
        replaced_backoff: wait before the first such reconnect; doubles each time.
        ban_default: ban length when the event names no expiry.
        ban_grace: after a ban's expiry, how long the connector may take to come
            back by itself before the sweep orders a reconnect.
        command_ttl: a command not claimed by then expires.
        keep_generations: retention keeps this many newest generations (plus the newest good).
        lease_grace: a lease is dead once `renewed_at + ttl + lease_grace` has passed.
        processed_events_ttl: dedupe records older than this are pruned.
        journal_size: recent events kept per account to re-apply out-of-order ones.
    """

    max_strikes: int = 2
    strike_window: timedelta = timedelta(minutes=10)
    transient_after_restart: timedelta = timedelta(seconds=60)
    stable_period: timedelta = timedelta(minutes=10)
    max_replaced_reconnects: int = 3
    replaced_backoff: timedelta = timedelta(seconds=30)
    ban_default: timedelta = timedelta(hours=1)
    ban_grace: timedelta = timedelta(minutes=2)
    command_ttl: timedelta = timedelta(minutes=10)
    keep_generations: int = 5
    lease_grace: timedelta = timedelta(seconds=30)
    processed_events_ttl: timedelta = timedelta(days=7)
    journal_size: int = 32

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, timedelta) and value < timedelta(0):
                raise PolicyError(f"policy setting {spec.name} must not be negative")
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise PolicyError(f"policy setting {spec.name} must not be negative")
        for name in ("command_ttl", "strike_window", "processed_events_ttl"):
            if getattr(self, name) <= timedelta(0):
                raise PolicyError(f"policy setting {name} must be positive")
        if self.keep_generations < 1 or self.journal_size < 1:
            raise PolicyError("policy settings keep_generations and journal_size must be at least 1")
