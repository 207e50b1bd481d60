"""When a sim session logs in again by itself (whatsmeow's auto-reconnect), as a table."""

from __future__ import annotations

import pytest

from connector.workers.policy import MAX_RECONNECT_DELAY_S, Ending, reconnect_delay


@pytest.mark.parametrize(
    ("ending", "failures", "reconnecting", "expected"),
    [
        (Ending.FINAL, 0, True, None),  # logout, ban, replaced, outdated: stay down
        (Ending.FINAL, 3, False, None),
        (Ending.RESTART, 0, True, 0.0),  # 515: at once
        (Ending.RESTART, 5, True, 0.0),
        (Ending.DROPPED, 0, True, 0.0),  # first try right away ...
        (Ending.DROPPED, 1, True, 2.0),  # ... then 2 s more per failed try
        (Ending.DROPPED, 3, True, 6.0),
        (Ending.DROPPED, 1000, True, MAX_RECONNECT_DELAY_S),  # capped
        (Ending.SERVER_ERROR, 0, False, 0.0),  # 500/503 at login: retried like a drop
        (Ending.SERVER_ERROR, 2, True, 4.0),
        (Ending.UNREACHABLE, 0, False, None),  # a first connect that fails just reports it
        (Ending.UNREACHABLE, 0, True, 0.0),  # during auto-reconnect: keep trying
        (Ending.UNREACHABLE, 4, True, 8.0),
    ],
)
def test_reconnect_delay(ending: Ending, failures: int, reconnecting: bool, expected: float | None) -> None:
    assert reconnect_delay(ending, failures, reconnecting) == expected
