"""When the daemon lists the desired accounts again instead of only counting them."""

from __future__ import annotations

import pytest

from connector.adapters.firestore_accounts import needs_listing


@pytest.mark.parametrize(
    ("since_listed_s", "counted", "known", "listed"),
    [
        (1e9, None, 0, True),  # never listed
        (60.0, 5, 5, True),  # a minute: listed whatever the count (a swap keeps it)
        (59.9, 5, 5, False),  # the count matches the set: nothing to read
        (10.0, 6, 5, True),  # one more account wants a host
        (10.0, 4, 5, True),  # one fewer
        (10.0, None, 5, True),  # not counted (the count failed): list
        (0.0, 0, 0, False),
    ],
)
def test_the_set_is_listed_when_the_count_differs_or_a_minute_passed(
    since_listed_s: float, counted: int | None, known: int, listed: bool
) -> None:
    assert needs_listing(since_listed_s, 60.0, counted, known) is listed
