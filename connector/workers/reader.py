"""Reading the worker protocol: one message per line, bad lines reported and skipped.

Used on both pipes: the supervisor reads a worker's stdout (REPORTS), a worker
reads its stdin (ORDERS). A bad line (garbage, not a known message, over
`MAX_LINE_BYTES`, or cut off at end of stream) becomes a `ProtocolError` for
that line alone; the reader goes on with the next line and never buffers more
than one line's limit, so a peer cannot make it grow without bound.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from connector.workers.protocol import MAX_LINE_BYTES, Message, ProtocolError, decode_line

CHUNK_BYTES = 64 * 1024

Item = bytes | ProtocolError
"""What the splitter yields: a complete line (without its newline) or the error for one."""


class LineSplitter:
    """Cuts a byte stream into lines of at most `limit` bytes (newline included).

    Pure: `feed` takes bytes and returns the complete lines and errors they
    finish; `end` reports what is left when the stream closes.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._skipping = False  # inside an oversized line: drop bytes up to its newline
        self._skipped = 0

    def feed(self, data: bytes) -> list[Item]:
        out: list[Item] = []
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            piece = data[start:end]
            if self._skipping:
                self._skipped += len(piece)
            else:
                self._buffer += piece
                if len(self._buffer) + 1 > self._limit:  # +1: the newline counts
                    self._skipping, self._skipped = True, len(self._buffer)
                    self._buffer.clear()
            if newline < 0:
                break
            out.append(self._finish_line())
            start = newline + 1
        return out

    def end(self) -> list[Item]:
        """At end of stream: a line without its newline is an error, not a message."""
        if self._skipping:
            return [self._finish_line()]
        if self._buffer:
            size = len(self._buffer)
            self._buffer.clear()
            return [ProtocolError(f"partial line of {size} bytes at end of stream (no newline)")]
        return []

    def _finish_line(self) -> Item:
        if self._skipping:
            size = self._skipped + 1
            self._skipping, self._skipped = False, 0
            return ProtocolError(f"line of {size} bytes is over the {self._limit}-byte limit")
        line = bytes(self._buffer)
        self._buffer.clear()
        return line


def parse_item(item: Item, allowed: dict[str, type[Message]]) -> Message | ProtocolError:
    """A line becomes a message, or the ProtocolError that says why it is not one."""
    if isinstance(item, ProtocolError):
        return item
    if not item.strip():
        return ProtocolError("empty line")
    try:
        return decode_line(item + b"\n", allowed)
    except ProtocolError as exc:
        return exc


async def read_messages(
    stream: asyncio.StreamReader, allowed: dict[str, type[Message]], limit: int = MAX_LINE_BYTES
) -> AsyncIterator[Message | ProtocolError]:
    """Every message on `stream` until it closes; each bad line yields its ProtocolError."""
    splitter = LineSplitter(limit)
    while True:
        data = await stream.read(CHUNK_BYTES)
        items = splitter.feed(data) if data else splitter.end()
        for item in items:
            yield parse_item(item, allowed)
        if not data:
            return


async def stdin_reader() -> asyncio.StreamReader:
    """An asyncio StreamReader over this process's stdin (a pipe from the supervisor)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK_BYTES * 2)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    return reader
