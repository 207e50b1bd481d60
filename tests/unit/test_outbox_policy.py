"""The outbox's pure decisions, by tables: backoff delays, who is blocked, when to wake."""

from __future__ import annotations

import pytest

from connector.outbox import (
    Backoff,
    RetryPolicy,
    after_attempt,
    blocked_accounts,
    idle_delay,
    next_retry_at,
)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (50, 8.0), (5000, 8.0)],
)
def test_delay_doubles_and_is_capped(failures: int, expected: float) -> None:
    assert RetryPolicy(initial_s=1.0, max_s=8.0, jitter_s=0.0).delay(failures) == expected


@pytest.mark.parametrize(("failures", "low", "high"), [(1, 0.5, 1.0), (3, 2.0, 2.5), (20, 60.0, 60.0)])
def test_jitter_stays_within_its_bound_and_the_cap(failures: int, low: float, high: float) -> None:
    policy = RetryPolicy(initial_s=0.5, max_s=60.0, jitter_s=0.5)
    delays = {policy.delay(failures) for _ in range(200)}
    assert all(low <= d <= high for d in delays)
    if low != high:
        assert len(delays) > 1, "jitter spreads retries"


BACKOFF = {"a": Backoff(failures=1, retry_at=10.0), "b": Backoff(failures=3, retry_at=20.0)}


@pytest.mark.parametrize(
    ("now", "blocked", "wake"),
    [
        (5.0, {"a", "b"}, 10.0),
        (10.0, {"b"}, 20.0),
        (15.0, {"b"}, 20.0),
        (20.0, set(), None),
        (99.0, set(), None),
    ],
)
def test_blocked_accounts_and_next_retry(now: float, blocked: set[str], wake: float | None) -> None:
    assert blocked_accounts(BACKOFF, now) == blocked
    assert next_retry_at(BACKOFF, now) == wake


def _double(failures: int) -> float:
    return 2.0**failures


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        # a new failure starts at one
        ([("c", False)], {**BACKOFF, "c": Backoff(1, 102.0)}),
        # a repeated failure counts on and waits longer
        ([("b", False)], {**BACKOFF, "b": Backoff(4, 116.0)}),
        # a success clears the account, others stay
        ([("a", True)], {"b": BACKOFF["b"]}),
        # one failure among successes of the same account is a failure
        ([("a", True), ("a", False), ("a", False)], {**BACKOFF, "a": Backoff(2, 104.0)}),
        # many accounts in one batch
        ([("a", True), ("b", True), ("c", True)], {}),
        ([], BACKOFF),
    ],
)
def test_after_attempt(results: list[tuple[str, bool]], expected: dict[str, Backoff]) -> None:
    assert after_attempt(BACKOFF, results, 100.0, _double) == expected


def test_after_attempt_does_not_change_its_input() -> None:
    before = dict(BACKOFF)
    after_attempt(BACKOFF, [("a", True), ("b", False)], 100.0, _double)
    assert before == BACKOFF


@pytest.mark.parametrize(
    ("attempted", "wake_at", "now", "expected"),
    [
        (True, None, 5.0, 0.0),
        (True, 50.0, 5.0, 0.0),
        (False, None, 5.0, None),
        (False, 8.0, 5.0, 3.0),
        (False, 4.0, 5.0, 0.0),
    ],
)
def test_idle_delay(attempted: bool, wake_at: float | None, now: float, expected: float | None) -> None:
    assert idle_delay(attempted, wake_at, now) == expected
