"""Running a Firestore transaction again when it lost a lock race.

Under contention a transaction can fail with ABORTED ("Transaction lock
timeout" in the emulator), DEADLINE_EXCEEDED or UNAVAILABLE even after the
client library's own commit retries. The writes wrapped here re-read what they
check inside the transaction (a status fenced by the lease, a command's claim),
so running them again is safe; without this the write was simply lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import tenacity
from google.api_core import exceptions as gexc

from connector.adapters.firestore_cas import WriteConflictError

log = logging.getLogger("wa_keeper.firestore")

P = ParamSpec("P")
R = TypeVar("R")

TRANSIENT = (
    gexc.Aborted,
    gexc.DeadlineExceeded,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    WriteConflictError,
)
RETRY_FOR_S = 30.0


def is_contention(exc: BaseException) -> bool:
    """A transient error, also when `@transactional` gave up on it after its own attempts
    (it raises ValueError("Failed to commit transaction in 5 attempts") from the last error)."""
    if isinstance(exc, ValueError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return isinstance(exc, TRANSIENT)


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    name = getattr(state.fn, "__qualname__", "transaction")
    log.warning("%s: %s; trying again (attempt %d)", name, type(error).__name__, state.attempt_number)


def retry_contended(fn: Callable[P, R]) -> Callable[P, R]:
    """Retry `fn` on transient Firestore errors with jittered backoff, for up to RETRY_FOR_S."""
    retrying: Callable[P, R] = tenacity.retry(
        retry=tenacity.retry_if_exception(is_contention),
        wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=3.0),
        stop=tenacity.stop_after_delay(RETRY_FOR_S),
        before_sleep=_log_retry,
        reraise=True,
    )(fn)
    return retrying
