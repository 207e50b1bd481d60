"""The double-connection reading of sim-server's records (tests/integration/sim_records.py), by table."""

from __future__ import annotations

import pytest

from tests.integration.sim_records import Connection, DoubleConnection, double_connections, takeover_gaps

JID = "15550000001:1@s.whatsapp.net"
NOW = 1000.0


def rec(
    label: str, start: float, end: float | None, why: str | None = "closed", jid: str = JID
) -> Connection:
    return Connection(
        conn_id=f"{label}-{start}",
        account="a",
        jid=jid,
        label=label,
        start=start,
        end=end,
        end_reason=None if end is None else why,
    )


def replacement(start: float, end: float, *labels: str) -> DoubleConnection:
    return DoubleConnection(JID, "replacement", labels, start, end)


CASES = [
    ("one place, reconnecting", [rec("A", 0, 10, "dropped"), rec("A", 12, None)], []),
    ("clean takeover after a gap", [rec("A", 0, 10), rec("B", 16, None)], []),
    (
        "takeover meeting an open connection",
        [rec("A", 0, 20, "stream_replaced"), rec("B", 20, None)],
        [replacement(20, 20, "A", "B")],
    ),
    (
        "the old place fights back twice",
        [
            rec("A", 0, 20, "stream_replaced"),
            rec("B", 20, 23, "stream_replaced"),
            rec("A", 23, 25, "stream_replaced"),
            rec("B", 25, None),
        ],
        [replacement(20, 25, "A", "B")],
    ),
    (
        "a replacement by the same place is no second place",
        [rec("A", 0, 20, "stream_replaced"), rec("A", 20, None)],
        [],
    ),
    (
        "two separate takeovers are two events",
        [
            rec("A", 0, 20, "stream_replaced"),
            rec("B", 20, 30),
            rec("A", 40, 50, "stream_replaced"),
            rec("B", 50, None),
        ],
        [replacement(20, 20, "A", "B"), replacement(50, 50, "A", "B")],
    ),
    (
        "overlapping records of two places (a server that did not kick)",
        [rec("A", 0, 30), rec("B", 20, None)],
        [DoubleConnection(JID, "overlap", ("A", "B"), 20, 30)],
    ),
    (
        "an open record overlaps until now",
        [rec("A", 0, None), rec("B", 990, None)],
        [DoubleConnection(JID, "overlap", ("A", "B"), 990, NOW)],
    ),
    ("touching records do not overlap", [rec("A", 0, 20), rec("B", 20, None)], []),
    (
        "other devices are read apart",
        [rec("A", 0, 20, "stream_replaced"), rec("B", 5, None, jid="other"), rec("B", 20, None)],
        [replacement(20, 20, "A", "B")],
    ),
]


@pytest.mark.parametrize(("case", "records", "expected"), CASES, ids=[c[0] for c in CASES])
def test_double_connections(case: str, records: list[Connection], expected: list[DoubleConnection]) -> None:
    assert double_connections(records, NOW) == expected, case


def test_the_length_of_a_fight_is_first_kick_to_last() -> None:
    found = double_connections(
        [rec("A", 0, 20, "stream_replaced"), rec("B", 20, 27.5, "stream_replaced"), rec("A", 27.5, None)], NOW
    )
    assert [d.seconds for d in found] == [7.5]


def test_takeover_gaps_are_the_outage_between_places() -> None:
    records = [rec("A", 0, 10), rec("B", 16.5, 30), rec("B", 31, 40), rec("A", 40, None)]
    assert takeover_gaps(records) == [6.5, 0.0]


def test_records_parse_from_the_sim_api() -> None:
    raw = {
        "conn_id": "c1",
        "account": "a",
        "jid": JID,
        "label": "host:1",
        "start": "2026-01-01T00:00:00.000000Z",
        "end": "2026-01-01T00:00:02.500000Z",
        "end_reason": "stream_replaced",
    }
    parsed = Connection.parse(raw)
    assert parsed.end is not None and parsed.end - parsed.start == 2.5
    assert Connection.parse({**raw, "end": None, "end_reason": None}).end is None
