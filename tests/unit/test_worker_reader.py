"""The protocol reader: garbage, partial and oversized lines are errors for that line only."""

from __future__ import annotations

import asyncio

import pytest

from connector.workers import protocol as wp
from connector.workers.reader import LineSplitter, parse_item, read_messages

LIMIT = 16


def run(chunks: list[bytes], limit: int = LIMIT) -> list[bytes | str]:
    """Feed chunks then end the stream; errors become their message text."""
    splitter = LineSplitter(limit)
    items = [item for chunk in chunks for item in splitter.feed(chunk)] + splitter.end()
    return [item if isinstance(item, bytes) else str(item) for item in items]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"ab\ncd\n"], [b"ab", b"cd"]),
        ([b"a", b"b\nc", b"d\n"], [b"ab", b"cd"]),  # lines split across reads
        ([b"\n"], [b""]),  # an empty line is still a line (parse_item rejects it)
        ([b"x" * 15 + b"\n"], [b"x" * 15]),  # exactly the limit, newline included
        ([b"x" * 16 + b"\nok\n"], ["line of 17 bytes is over the 16-byte limit", b"ok"]),
        ([b"x" * 10, b"x" * 10, b"x" * 10, b"\nok\n"], ["line of 31 bytes is over the 16-byte limit", b"ok"]),
        ([b"ok\n", b"partial"], [b"ok", "partial line of 7 bytes at end of stream (no newline)"]),
        ([b"x" * 40], ["line of 41 bytes is over the 16-byte limit"]),  # oversized and cut off at EOF
        ([], []),
    ],
)
def test_line_splitting(chunks: list[bytes], expected: list[bytes | str]) -> None:
    assert run(chunks) == expected


def test_byte_by_byte_gives_the_same_lines() -> None:
    data = b"first\n" + b"y" * 30 + b"\nlast\n"
    assert (
        run([bytes([b]) for b in data])
        == run([data])
        == [
            b"first",
            "line of 31 bytes is over the 16-byte limit",
            b"last",
        ]
    )


START = b'{"type":"start","account":"a","session_path":"/s/a.db"}'


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"", "empty line"),
        (b"   ", "empty line"),
        (b"garbage", "line is not valid JSON"),
        (b"\xff\xfe", "line is not valid JSON"),
        (b"[1, 2]", "line is not a JSON object"),
        (b'{"type":"start","account":"a","session_pa', "line is not valid JSON"),
        (b'{"type":"teleport","account":"a"}', "unknown message type 'teleport'"),
        (b'{"type":"connected","account":"a"}', "unknown message type 'connected'"),  # a report, not an order
        (b'{"type":"start","account":"a"}', "start: session_path: must not be empty"),
        (b'{"type":"stop","account":"","x":1}', "stop: x: unknown field"),
        (b'{"type":"stop","account":""}', "stop: account: must not be empty"),
        (b'{"type":"stop","account":7}', "stop: account: must be a string"),
        (b'{"type":"hold","account":"a","for_ms":0}', "hold: for_ms: must be at least 1"),
        (b'{"type":"hold","account":"a","for_ms":3600001}', "hold: for_ms: must be at most 3600000"),
        (b'{"type":"hold","account":"a","for_ms":"5"}', "hold: for_ms: must be an integer"),
        (
            b'{"type":"start","account":"a","session_path":"/s","hold_ms":-1}',
            "start: hold_ms: must be at least 0",
        ),
    ],
)
def test_bad_lines_become_protocol_errors(line: bytes, problem: str) -> None:
    result = parse_item(line, wp.ORDERS)
    assert isinstance(result, wp.ProtocolError)
    assert str(result) == problem


def test_a_good_line_becomes_its_message() -> None:
    assert parse_item(START, wp.ORDERS) == wp.Start(account="a", session_path="/s/a.db")
    hold = b'{"type":"hold","account":"a","for_ms":10000}'
    assert parse_item(hold, wp.ORDERS) == wp.Hold(account="a", for_ms=10_000)
    assert (
        wp.encode_line(wp.Hold(account="a", for_ms=10_000))
        == b'{"account":"a","for_ms":10000,"type":"hold"}\n'
    )


async def test_the_reader_goes_on_after_each_bad_line() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b"garbage\n" + START + b"\n" + b"{" + b" " * wp.MAX_LINE_BYTES + b"}\n")
    stream.feed_data(b'{"type":"stop","account":"a"}\n{"type":"pair","acc')
    stream.feed_eof()
    items = [item async for item in read_messages(stream, wp.ORDERS)]
    assert [type(i).__name__ for i in items] == [
        "ProtocolError",
        "Start",
        "ProtocolError",
        "Stop",
        "ProtocolError",
    ]
    assert "over the 16384-byte limit" in str(items[2])
    assert "partial line" in str(items[4])


async def test_reports_are_read_with_the_reports_table() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(wp.encode_line(wp.Disconnected(account="a", reason="drop", code=428)))
    stream.feed_data(wp.encode_line(wp.Rejected(account="a", order="pair", reason="already paired")))
    stream.feed_data(START + b"\n")  # an order where reports are expected
    stream.feed_eof()
    items = [item async for item in read_messages(stream, wp.REPORTS)]
    assert items[:2] == [
        wp.Disconnected(account="a", reason="drop", code=428),
        wp.Rejected(account="a", order="pair", reason="already paired"),
    ]
    assert isinstance(items[2], wp.ProtocolError)


def test_a_report_without_the_new_code_field_still_decodes() -> None:
    assert parse_item(b'{"type":"disconnected","account":"a","reason":"x"}', wp.REPORTS) == wp.Disconnected(
        account="a", reason="x", code=None
    )
