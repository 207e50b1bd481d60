"""`decide(event, account, now, config)`: one event against one account's record.

Delivery is at least once and unordered, so the state is a fold of the
account's events in their own order (lease epoch, then event time), not in
arrival order. The record keeps
a `base` state and a short `journal` of the newest events; an event older than
the newest is inserted in place and the journal re-applied. Hence the same
events, duplicated or shuffled, give the same final state.

Commands come only from the newest event: a late event is history (the
account has moved on), so it changes the state but orders nothing. Facts
(backup_written, lease_*, keepalive_timeout, disk_lost) change no state: they
are not journaled, so a newer fact never makes an event late. Facts
(`MarkGood`) are recorded whatever the order. An event whose lease epoch is
older than the lease's changes nothing; one older than everything the
journal still holds is too late to place and changes nothing either.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from policy.config import PolicyConfig
from policy.errors import PolicyError
from policy.model import TICK, BackupRef, Intent, JournalKey, MarkGood, Order, PolicyEvent, PolicyState
from policy.rules import moves_state, step
from wa_wire import Command, LifecycleEvent, command_id_for
from wa_wire.codec import utc_timestamp

ISSUER = "policy"
TICK_STEP = timedelta(microseconds=1)


class Outcome(StrEnum):
    APPLIED = "applied"
    LATE = "late"
    DUPLICATE = "duplicate"
    STALE_EPOCH = "stale_epoch"
    TOO_OLD = "too_old"
    SETTLED = "settled"
    IDLE = "idle"
    FACT = "fact"
    """An event that changes no state (backup_written, lease_*…): recorded, never journaled."""


@dataclass(frozen=True)
class PolicyRecord:
    """What is stored per account (`accounts/{id}.policy`): base state plus newest events.

    `horizon` is the order key of the last event folded into `base`; nothing
    older can be placed any more.
    """

    base: PolicyState = field(default_factory=PolicyState)
    journal: tuple[PolicyEvent, ...] = ()
    horizon: JournalKey | None = None

    def to_fields(self) -> dict[str, Any]:
        horizon = None
        if self.horizon is not None:
            horizon = [self.horizon[0], utc_timestamp(self.horizon[1]), self.horizon[2]]
        return {
            "base": self.base.to_fields(),
            "journal": [e.to_fields() for e in self.journal],
            "horizon": horizon,
        }

    @classmethod
    def from_fields(cls, data: object) -> PolicyRecord:
        if data is None:
            return cls()
        if not isinstance(data, dict) or not isinstance(data.get("journal", []), list):
            raise PolicyError("policy record is not an object with a journal list")
        journal = tuple(
            sorted((PolicyEvent.from_fields(e) for e in data.get("journal", [])), key=lambda e: e.order)
        )
        horizon = data.get("horizon")
        parsed = None
        if horizon is not None:
            if not isinstance(horizon, list) or len(horizon) != 3 or not isinstance(horizon[2], str):
                raise PolicyError("policy record: horizon is not [epoch, time, id]")
            fields = {"epoch": horizon[0], "at": horizon[1], "id": horizon[2], "type": TICK}
            parsed = PolicyEvent.from_fields(fields).order
        return cls(PolicyState.from_fields(data.get("base", {})), journal, parsed)

    def has(self, event_id: str) -> bool:
        return any(e.event_id == event_id for e in self.journal)


@dataclass(frozen=True)
class AccountView:
    """What decide reads about an account: its record, its backups, its lease epoch."""

    account_id: str
    record: PolicyRecord = field(default_factory=PolicyRecord)
    backups: tuple[BackupRef, ...] = ()
    lease_epoch: int = 0


@dataclass(frozen=True)
class Decision:
    """The new record and state, the commands to create and the generations to mark good."""

    outcome: Outcome
    record: PolicyRecord
    before: PolicyState
    state: PolicyState
    commands: tuple[tuple[str, Command], ...] = ()
    mark_good: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        return self.outcome in (Outcome.APPLIED, Outcome.LATE, Outcome.SETTLED)

    @property
    def newest(self) -> PolicyEvent | None:
        events = [e for e in self.record.journal if e.type is not None]
        return events[-1] if events else None


def fold(record: PolicyRecord, backups: tuple[BackupRef, ...], config: PolicyConfig) -> PolicyState:
    """The current state: the journal applied to the base, in order."""
    state = record.base
    for event in record.journal:
        state, _ = step(state, event, backups, config)
    return state


def _trim(record: PolicyRecord, backups: tuple[BackupRef, ...], config: PolicyConfig) -> PolicyRecord:
    base, journal, horizon = record.base, list(record.journal), record.horizon
    while len(journal) > config.journal_size:
        oldest = journal.pop(0)
        base, _ = step(base, oldest, backups, config)
        horizon = oldest.order
    return PolicyRecord(base, tuple(journal), horizon)


def to_commands(
    account: str, orders: list[Order], now: datetime, config: PolicyConfig
) -> tuple[tuple[str, Command], ...]:
    """Command documents, each id derived from (source event, action): a retry makes no duplicate."""
    issued, expires = utc_timestamp(now), utc_timestamp(now + config.command_ttl)
    return tuple(
        (
            command_id_for(order.source, order.action),
            Command(
                account_id=account,
                action=order.action,
                params=order.params(),
                reason=order.reason[:2000],
                issued_by=ISSUER,
                source_event_id=order.source,
                issued_at=issued,
                expires_at=expires,
            ),
        )
        for order in orders
    )


def _unchanged(outcome: Outcome, account: AccountView, state: PolicyState) -> Decision:
    return Decision(outcome, account.record, state, state)


def apply_event(
    event: PolicyEvent, account: AccountView, now: datetime, config: PolicyConfig, outcome_if_new: Outcome
) -> Decision:
    """Place one journal entry (event or tick) in order and re-fold.

    Its orders count only when no newer event changes the state (sweep ticks
    and facts such as backup_written do not make an event late: they only
    replay after it).
    """
    record, backups = account.record, account.backups
    before = fold(record, backups, config)
    if record.has(event.event_id):
        return _unchanged(Outcome.DUPLICATE, account, before)
    if record.horizon is not None and event.order <= record.horizon:
        return _unchanged(Outcome.TOO_OLD, account, before)
    position = bisect.bisect([e.order for e in record.journal], event.order)
    journal = (*record.journal[:position], event, *record.journal[position:])
    newest = all(e.type is None or not moves_state(e.type) for e in record.journal[position:])
    state = record.base
    intents: list[Intent] = []
    for entry in journal:
        state, produced = step(state, entry, backups, config)
        if entry is event:
            intents = produced if newest else [i for i in produced if isinstance(i, MarkGood)]
    orders = [i for i in intents if isinstance(i, Order)]
    return Decision(
        outcome=outcome_if_new if newest else Outcome.LATE,
        record=_trim(PolicyRecord(record.base, journal, record.horizon), backups, config),
        before=before,
        state=state,
        commands=to_commands(account.account_id, orders, now, config),
        mark_good=tuple(i.generation for i in intents if isinstance(i, MarkGood)),
    )


def decide(event: LifecycleEvent, account: AccountView, now: datetime, config: PolicyConfig) -> Decision:
    """Apply a lifecycle event: drop a stale epoch, dedupe, place in order, order commands."""
    if event.account_id != account.account_id:
        raise PolicyError(f"event for {event.account_id} applied to account {account.account_id}")
    if not moves_state(event.type):
        return _unchanged(Outcome.FACT, account, fold(account.record, account.backups, config))
    if event.lease_epoch < account.lease_epoch:
        return _unchanged(Outcome.STALE_EPOCH, account, fold(account.record, account.backups, config))
    return apply_event(PolicyEvent.of(event), account, now, config, Outcome.APPLIED)


def settle(account: AccountView, now: datetime, config: PolicyConfig) -> Decision:
    """The sweep's tick: time-driven rules at `now`; recorded only when it changes something.

    The tick goes after every journal entry (a connector clock ahead of ours
    must not make it late), so its orders always count.
    """
    journal = account.record.journal
    last = journal[-1] if journal else None
    at = now if last is None else max(now, last.at + TICK_STEP)
    tick = PolicyEvent.tick(at, 0 if last is None else last.epoch)
    before = fold(account.record, account.backups, config)
    after, intents = step(before, tick, account.backups, config)
    if after == before and not intents:
        return _unchanged(Outcome.IDLE, account, before)
    return apply_event(tick, account, now, config, Outcome.SETTLED)
