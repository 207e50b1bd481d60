"""decide/settle: dedupe, stale epochs, out-of-order delivery, commands, the sweep's tick."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from policy import AccountView, BackupRef, Outcome, PolicyConfig, PolicyError, PolicyRecord, decide, settle
from policy.decide import Decision
from wa_wire import AccountStatus, CommandAction, EventType, LifecycleEvent, command_id_for
from wa_wire.codec import utc_timestamp

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=30)
CFG = PolicyConfig()
BACKUPS = (BackupRef(3, True), BackupRef(4, True))
ACCOUNT = "acct-1"


def event(
    kind: EventType, seconds: float, code: int | None = None, epoch: int = 2, gen: int | None = None
) -> LifecycleEvent:
    return LifecycleEvent.new(
        kind,
        account_id=ACCOUNT,
        connector_id="conn-a",
        lease_epoch=epoch,
        at=T0 + timedelta(seconds=seconds),
        reason_code=code,
        session_generation=gen,
    )


def view(record: PolicyRecord | None = None, epoch: int = 2) -> AccountView:
    return AccountView(ACCOUNT, record or PolicyRecord(), BACKUPS, epoch)


def run(events: list[LifecycleEvent], config: PolicyConfig = CFG) -> tuple[PolicyRecord, list[Decision]]:
    record, decisions = PolicyRecord(), []
    for evt in events:
        decision = decide(evt, view(record), NOW, config)
        decisions.append(decision)
        record = decision.record
    return record, decisions


# A history whose meaning depends on order: the 401 is transient only after the 515.
HISTORY = [
    event(EventType.CONNECTED, 0, gen=3),
    event(EventType.STREAM_ERROR, 100, code=515),
    event(EventType.LOGGED_OUT, 130, code=401),
    event(EventType.RESTORED, 140, gen=4),
    event(EventType.CONNECTED, 150, gen=4),
    event(EventType.STREAM_REPLACED, 200),
]


def test_in_order_history_gives_the_expected_state() -> None:
    _, decisions = run(HISTORY)
    state = decisions[-1].state
    assert state.status is AccountStatus.RECONNECTING
    assert state.strikes.count == 0  # the 401 came 30 s after a 515
    assert state.replaced_count == 1
    assert [d.outcome for d in decisions] == [Outcome.APPLIED] * len(HISTORY)
    restore = decisions[2].commands
    assert [(c.action, c.params) for _, c in restore] == [(CommandAction.RESTORE, {"generation": 4})]


def test_duplicates_change_nothing() -> None:
    record, _ = run(HISTORY)
    again = decide(HISTORY[2], view(record), NOW, CFG)
    assert again.outcome is Outcome.DUPLICATE
    assert again.record == record and again.commands == () and not again.changed


@pytest.mark.parametrize("order", list(itertools.permutations(range(5))))
def test_any_arrival_order_gives_the_same_final_state(order: tuple[int, ...]) -> None:
    expected, expected_decisions = run(HISTORY[:5])
    record, decisions = run([HISTORY[i] for i in order])
    assert record == expected
    assert decisions[-1].state == expected_decisions[-1].state


def test_shuffled_and_duplicated_delivery_gives_the_same_final_state() -> None:
    expected, _ = run(HISTORY)
    rng = random.Random(7)
    for _ in range(50):
        deliveries = HISTORY + rng.sample(HISTORY, 3)
        rng.shuffle(deliveries)
        record, _ = run(deliveries)
        assert record == expected


def test_a_late_event_orders_nothing_but_records_facts() -> None:
    record, _ = run([event(EventType.DISCONNECTED, 500)])
    late_logout = decide(event(EventType.LOGGED_OUT, 100, code=401), view(record), NOW, CFG)
    assert late_logout.outcome is Outcome.LATE and late_logout.commands == ()
    late_connect = decide(event(EventType.CONNECTED, 50, gen=4), view(record), NOW, CFG)
    assert late_connect.mark_good == (4,) and late_connect.commands == ()


@pytest.mark.parametrize(
    "fact", [EventType.BACKUP_WRITTEN, EventType.KEEPALIVE_TIMEOUT, EventType.LEASE_ACQUIRED]
)
def test_a_newer_fact_delivered_first_does_not_make_a_logout_late(fact: EventType) -> None:
    """A backup that finished a moment after the 401 can be delivered first; the restore is still ordered."""
    record, _ = run([event(EventType.CONNECTED, 0, gen=4), event(fact, 131, gen=4)])
    logout = decide(event(EventType.LOGGED_OUT, 130, code=401), view(record), NOW, CFG)
    assert logout.outcome is Outcome.APPLIED
    assert [(c.action, c.params) for _, c in logout.commands] == [(CommandAction.RESTORE, {"generation": 4})]


@pytest.mark.parametrize("kind", [EventType.STREAM_REPLACED, EventType.LOGGED_OUT, EventType.CONNECTED])
def test_a_stale_epoch_changes_nothing(kind: EventType) -> None:
    record, _ = run(HISTORY[:2])
    stale = decide(event(kind, 300, code=401, epoch=1, gen=4), view(record, epoch=2), NOW, CFG)
    assert stale.outcome is Outcome.STALE_EPOCH
    assert stale.record == record and stale.commands == () and stale.mark_good == ()
    assert stale.state == stale.before


def test_an_event_of_a_newer_epoch_than_the_lease_applies() -> None:
    decision = decide(event(EventType.STREAM_REPLACED, 0, epoch=3), view(epoch=2), NOW, CFG)
    assert decision.outcome is Outcome.APPLIED and decision.state.replaced_count == 1


def test_a_newer_epoch_orders_after_an_older_one_whatever_the_clocks_say() -> None:
    """The old holder's clock ran an hour fast: the new holder's events still come last."""
    record, _ = run([event(EventType.CONNECTED, 3600, epoch=2)])
    logout = decide(event(EventType.LOGGED_OUT, 10, code=401, epoch=3), view(record, epoch=3), NOW, CFG)
    assert logout.outcome is Outcome.APPLIED
    assert [c.action for _, c in logout.commands] == [CommandAction.RESTORE]
    assert logout.state.status is AccountStatus.NEEDS_RESTORE


def test_commands_are_contract_commands_with_derived_ids() -> None:
    logout = event(EventType.LOGGED_OUT, 10, code=401)
    first = decide(logout, view(), NOW, CFG)
    retry = decide(logout, view(), NOW + timedelta(seconds=5), CFG)
    ((cid, command),) = first.commands
    assert cid == command_id_for(logout.event_id, CommandAction.RESTORE) == retry.commands[0][0]
    assert command.account_id == ACCOUNT and command.issued_by == "policy"
    assert command.source_event_id == logout.event_id
    assert (command.issued_at, command.expires_at) == (
        utc_timestamp(NOW),
        utc_timestamp(NOW + CFG.command_ttl),
    )


def test_the_journal_is_bounded_and_the_fold_survives_trimming() -> None:
    small = PolicyConfig(journal_size=3)
    events = [event(EventType.DISCONNECTED if i % 2 else EventType.CONNECTED, i * 10) for i in range(8)]
    events.append(event(EventType.LOGGED_OUT, 100, code=401))
    record, decisions = run(events, small)
    _, full_decisions = run(events)
    assert len(record.journal) == 3 and record.horizon is not None
    assert decisions[-1].state == full_decisions[-1].state
    too_old = decide(event(EventType.LOGGED_OUT, 5, code=401), view(record), NOW, small)
    assert too_old.outcome is Outcome.TOO_OLD and too_old.record == record


def test_settle_is_idle_without_anything_due() -> None:
    record, _ = run([event(EventType.CONNECTED, 0)])
    decision = settle(view(record), T0 + timedelta(minutes=1), CFG)
    assert decision.outcome is Outcome.IDLE and not decision.changed


def test_settle_orders_the_reconnect_once_the_backoff_is_over() -> None:
    replaced = event(EventType.STREAM_REPLACED, 0)
    record, _ = run([replaced])
    assert settle(view(record), T0 + timedelta(seconds=29), CFG).outcome is Outcome.IDLE
    due = settle(view(record), T0 + timedelta(seconds=31), CFG)
    assert due.outcome is Outcome.SETTLED
    assert [cid for cid, _ in due.commands] == [command_id_for(replaced.event_id, CommandAction.RECONNECT)]
    assert settle(view(due.record), T0 + timedelta(minutes=5), CFG).outcome is Outcome.IDLE


def test_a_tick_never_makes_the_next_real_event_late() -> None:
    record, _ = run([event(EventType.STREAM_REPLACED, 0)])
    ticked = settle(view(record), T0 + timedelta(seconds=40), CFG).record
    logout = decide(event(EventType.LOGGED_OUT, 35, code=401), view(ticked), NOW, CFG)
    assert logout.outcome is Outcome.APPLIED
    assert [c.action for _, c in logout.commands] == [CommandAction.RESTORE]


def test_a_tick_goes_after_events_stamped_by_a_clock_ahead_of_ours() -> None:
    record, _ = run([event(EventType.TEMPORARY_BAN, 0)])
    # the sweep's clock is behind the event's: the tick still lands last and is idle
    decision = settle(view(record), T0 - timedelta(hours=1), CFG)
    assert decision.outcome is Outcome.IDLE


def test_the_record_round_trips_through_its_stored_form() -> None:
    record, _ = run(HISTORY, PolicyConfig(journal_size=4))
    assert PolicyRecord.from_fields(record.to_fields()) == record
    assert PolicyRecord.from_fields(None) == PolicyRecord()


@pytest.mark.parametrize(
    "stored",
    [
        "text",
        {"journal": "nope"},
        {"journal": [{"id": "x", "type": "exploded", "at": "2026-01-01T00:00:00Z"}]},
        {"journal": [{"id": "x", "type": "connected", "at": "yesterday"}]},
        {"journal": [{"id": "x", "type": "connected"}]},
        {"base": {"status": "sleeping"}},
        {"base": {"strikes": {"count": -1}}},
        {"base": {"reconnect_due": {"at": "2026-01-01T00:00:00Z"}}},
        {"horizon": ["2026-01-01T00:00:00Z"]},
    ],
)
def test_a_malformed_stored_record_is_a_clear_error(stored: object) -> None:
    with pytest.raises(PolicyError, match="policy record"):
        PolicyRecord.from_fields(stored)


def test_an_event_for_another_account_is_refused() -> None:
    other = LifecycleEvent.new(
        EventType.CONNECTED, account_id="acct-2", connector_id="c", lease_epoch=2, at=T0
    )
    with pytest.raises(PolicyError, match="acct-2"):
        decide(other, view(), NOW, CFG)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_strikes": -1},
        {"command_ttl": timedelta(0)},
        {"keep_generations": 0},
        {"ban_grace": timedelta(-1)},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(PolicyError, match="policy setting"):
        PolicyConfig(**settings)  # type: ignore[arg-type]
