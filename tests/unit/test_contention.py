"""Which errors count as lock contention worth another try, on both sides of the contract."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from connector.adapters import firestore_retry
from control import lifecycle


def gave_up(cause: BaseException) -> ValueError:
    """What `@firestore.transactional` raises after its own attempts."""
    try:
        raise ValueError("Failed to commit transaction in 5 attempts.") from cause
    except ValueError as exc:
        return exc


CASES = [
    (gexc.Aborted("Transaction lock timeout."), True),
    (gexc.ServiceUnavailable("restarting"), True),
    (gexc.DeadlineExceeded("slow"), True),
    (gave_up(gexc.Aborted("Transaction lock timeout.")), True),
    (ValueError("a bad value"), False),
    (gave_up(KeyError("x")), False),
    (gexc.PermissionDenied("rules"), False),
    (gexc.InvalidArgument("too big"), False),
]


@pytest.mark.parametrize(("error", "transient"), CASES)
def test_the_functions_retry_only_contention(error: BaseException, transient: bool) -> None:
    assert lifecycle.is_contention(error) is transient


@pytest.mark.parametrize(("error", "transient"), CASES)
def test_the_connector_retries_only_contention(error: BaseException, transient: bool) -> None:
    assert firestore_retry.is_contention(error) is transient


def test_a_contended_write_is_tried_again_until_it_lands() -> None:
    calls: list[int] = []

    @firestore_retry.retry_contended
    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise gave_up(gexc.Aborted("Transaction lock timeout."))
        return "written"

    assert write() == "written" and len(calls) == 3


def test_a_real_error_is_not_retried() -> None:
    calls: list[int] = []

    @firestore_retry.retry_contended
    def write() -> None:
        calls.append(1)
        raise gexc.PermissionDenied("rules")

    with pytest.raises(gexc.PermissionDenied):
        write()
    assert len(calls) == 1
