"""One websocket of the sim-server: its frames in order, and how the server ends it.

`Link` reads frames in a task of its own into a queue, so the server can wait
for "the next frame, or a QR scan, or a timeout" without two readers on one
socket; `kick` ends a link from elsewhere (a fault, a newer connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from connector.sim import wire
from connector.tasks import cancel_and_wait

CLOSED = None


class Link:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._inbox: asyncio.Queue[str | wire.SimWireError | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type is WSMsgType.TEXT:
                    self._inbox.put_nowait(message.data)
                elif message.type is WSMsgType.BINARY:
                    self._inbox.put_nowait(wire.SimWireError("binary frames are not part of the protocol"))
        finally:
            self._inbox.put_nowait(CLOSED)

    def next_frame_task(self) -> asyncio.Task[str | wire.SimWireError | None]:
        return asyncio.create_task(self._inbox.get())

    async def next_frame(self, within: float | None = None) -> wire.Frame | None:
        """The next frame from the worker; None once the socket is closed."""
        raw = await asyncio.wait_for(self._inbox.get(), within)
        return self.parse(raw)

    @staticmethod
    def parse(raw: str | wire.SimWireError | None) -> wire.Frame | None:
        if raw is None:
            return None
        if isinstance(raw, wire.SimWireError):
            raise raw
        return wire.load(raw, wire.TO_SERVER)

    async def send(self, frame: wire.Frame) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(wire.dump(frame))

    async def close(self, code: int = 1000, why: str = "") -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=why.encode()[:120])

    async def finish(self) -> None:
        await cancel_and_wait(self._reader)


@dataclass
class LiveDevice:
    """A logged-in link: which device it drives, and why it ended (set by whoever ends it)."""

    link: Link
    account: str
    jid: str
    conn_id: str
    end_reason: str | None = None

    async def kick(self, frame: wire.Frame | None, reason: str, close_code: int = 1000) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        if frame is not None:
            await self.link.send(frame)
        await self.link.close(close_code, reason)
