"""A sim-server on a real loopback socket, and in-process sim sessions talking to it.

`sim_stack` starts the server on port 0 with fast intervals; `Reports` collects
what sessions emit and waits for a report to arrive (with a deadline, never a
fixed sleep).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from connector.sessions import whatsmeow
from connector.sim.server import RunningServer, SimConfig, start_server
from connector.workers import protocol as wp
from connector.workers.sim_session import SimLink, SimSession

M = TypeVar("M", bound=wp.Message)
FAST = SimConfig(keepalive_ms=200, churn_ms=50, first_qr_s=30, next_qr_s=10)
DEADLINE_S = 15.0


@functools.cache
def template() -> Path:
    """An empty whatsmeow session made once per test process (neonize, in a subprocess)."""
    folder = Path(tempfile.mkdtemp(prefix="wa-keeper-test-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / whatsmeow.SESSION_FILE
    whatsmeow.make_schema(path)
    return path


def snapshot(source: Path, target: Path) -> None:
    """A consistent copy of a live session file (SQLite's backup API: the WAL is included)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


async def _template() -> Path:
    return template()


class Reports:
    """Every report sessions emitted, in order; `next` waits for the next one of a kind."""

    def __init__(self) -> None:
        self.messages: list[wp.Message] = []
        self._cursor: dict[str, int] = {}
        self._changed = asyncio.Event()

    def emit(self, message: wp.Message) -> None:
        self.messages.append(message)
        self._changed.set()

    async def next(self, kind: type[M], account: str, within: float = DEADLINE_S) -> M:
        """The first `kind` report of `account` after the last one `next` returned for it."""
        try:
            async with asyncio.timeout(within):
                while True:
                    start = self._cursor.get(account, 0)
                    for index in range(start, len(self.messages)):
                        message = self.messages[index]
                        if message.account == account and isinstance(message, kind):
                            self._cursor[account] = index + 1
                            return message
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = [m for m in self.messages if m.account == account]
            raise AssertionError(f"no {kind.TYPE} for {account} within {within} s; saw {seen}") from None

    def of(self, account: str) -> list[wp.Message]:
        return [m for m in self.messages if m.account == account]


@dataclass
class Stack:
    server: RunningServer
    http: aiohttp.ClientSession
    root: Path
    reports: Reports = field(default_factory=Reports)
    sessions: list[SimSession] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, account: str, path: Path | None = None, label: str = "test") -> SimSession:
        path = path or self.root / account / whatsmeow.SESSION_FILE
        link = SimLink(server_url=self.url, http=self.http, label=label)
        session = SimSession(account, path, link, self.reports.emit, template=_template)
        self.sessions.append(session)
        return session

    async def api(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with self.http.request(method, self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def fault(self, account: str, **fault: Any) -> tuple[int, Any]:
        return await self.api("POST", f"/api/accounts/{account}/faults", fault)

    async def paired(self, account: str, path: Path | None = None, label: str = "test") -> SimSession:
        """A session of `account`, paired through a QR scan and connected."""
        session = self.session(account, path, label)
        await session.start()
        await self.reports.next(wp.Loaded, account)
        await session.pair()
        await self.reports.next(wp.Qr, account)
        status, body = await self.api("POST", "/api/scan", {"account": account})
        assert status == 200, body
        await self.reports.next(wp.Paired, account)
        await self.reports.next(wp.Connected, account)
        return session


@asynccontextmanager
async def sim_stack(root: Path, config: SimConfig = FAST) -> AsyncIterator[Stack]:
    server = await start_server(port=0, config=config)
    try:
        async with aiohttp.ClientSession() as http:
            stack = Stack(server=server, http=http, root=root)
            try:
                yield stack
            finally:
                for session in stack.sessions:
                    if session.running:  # a test that failed half-way
                        await session.stop()
    finally:
        await server.close()
