"""`wa-keeper worker --transport sim`: many simulated accounts in one process.

Reads orders from stdin and writes reports to stdout (connector.workers.protocol);
each account is a `SimSession` talking to sim-server (WA_KEEPER_SIM_URL). Orders
of one account run in order; accounts run side by side. New session files are
copies of one template per process, made once by neonize in a subprocess
(`whatsmeow.make_schema`): this process opens session files with sqlite3, so it
never imports neonize. Stops every session on stdin EOF, `stop` or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from connector.sessions import whatsmeow
from connector.workers import protocol as wp
from connector.workers.hold import Holds, expired_reason
from connector.workers.reader import read_messages, stdin_reader
from connector.workers.sim_session import OrderRejected, SimLink, SimSession
from connector.workers.writer import claim_stdout

log = logging.getLogger(__name__)

STOP_BOUND_S = 4.0


class Template:
    """An empty whatsmeow session made once, then copied for every new account."""

    def __init__(self, path: Path | None = None) -> None:
        self._given = path
        self._made: Path | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Path:
        if self._given is not None:
            return self._given
        async with self._lock:
            if self._made is None:
                folder = Path(tempfile.mkdtemp(prefix="wa-keeper-sim-template-"))
                await asyncio.to_thread(whatsmeow.make_schema, folder / whatsmeow.SESSION_FILE)
                self._made = folder / whatsmeow.SESSION_FILE
            return self._made

    def remove(self) -> None:
        if self._made is not None:
            shutil.rmtree(self._made.parent, ignore_errors=True)


@dataclass(frozen=True)
class _Drop(wp.Message):
    """Internal order (never on the wire): the account's hold ran out."""

    TYPE = "drop"


class SimWorker:
    """Dispatches orders to the sessions of many accounts."""

    def __init__(self, link: SimLink, emit: Callable[[wp.Message], None], template: Template) -> None:
        self._link, self._emit, self._template = link, emit, template
        self.sessions: dict[str, SimSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.holds = Holds(self._hold_expired)

    def _hold_expired(self, account: str) -> None:
        session = self.sessions.get(account)
        if session is not None and session.running:
            log.warning("%s", expired_reason(account))
            self.submit(_Drop(account=account))

    def submit(self, order: wp.Message) -> None:
        """Handle `order` in the background, after earlier orders of the same account."""
        task = asyncio.create_task(self._locked(order))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _locked(self, order: wp.Message) -> None:
        async with self._locks.setdefault(order.account, asyncio.Lock()):
            try:
                await self.handle(order)
            except OrderRejected as exc:
                self._emit(wp.Rejected(account=order.account, order=order.TYPE, reason=str(exc)))
            except Exception as exc:  # one account's failure must not take the others down
                log.exception("order %s for %s failed", order.TYPE, order.account)
                self._emit(wp.Fatal(account=order.account, message=f"{order.TYPE} failed: {exc}"[:500]))

    async def handle(self, order: wp.Message) -> None:
        session = self.sessions.get(order.account)
        if isinstance(order, wp.Start):
            if session is not None:
                raise OrderRejected("already started; stop it first")
            session = SimSession(
                order.account, Path(order.session_path), self._link, self._emit, template=self._template
            )
            self.sessions[order.account] = session
            self.holds.extend(order.account, order.hold_ms)
            await session.start()
            return
        if session is None:
            raise OrderRejected("not started")
        if isinstance(order, wp.Hold):
            self.holds.extend(order.account, order.for_ms)
        elif isinstance(order, _Drop):
            await session.drop(expired_reason(order.account))
        elif isinstance(order, wp.Pair):
            await session.pair()
        elif isinstance(order, wp.Logout):
            del self.sessions[order.account]
            self.holds.cancel(order.account)
            await session.logout()
        elif isinstance(order, wp.Stop):
            del self.sessions[order.account]
            self.holds.cancel(order.account)
            await session.stop()

    async def drain(self) -> None:
        """Wait for the orders in flight."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def stop_all(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)


async def serve(server_url: str, template_path: Path | None = None) -> int:
    """The worker process: orders on stdin until EOF or SIGTERM, reports on stdout."""
    writer = claim_stdout()
    template = Template(template_path)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    connector = aiohttp.TCPConnector(limit=0)  # one websocket per account, hundreds of them
    async with aiohttp.ClientSession(connector=connector) as http:
        link = SimLink(server_url=server_url, http=http, label=f"{socket.gethostname()}:{os.getpid()}")
        worker = SimWorker(link, writer.emit, template)
        orders = asyncio.create_task(_read_orders(await stdin_reader(), worker))
        signalled = asyncio.create_task(stopping.wait())
        await asyncio.wait({orders, signalled}, return_when=asyncio.FIRST_COMPLETED)
        orders.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_shutdown(worker), STOP_BOUND_S)
    template.remove()
    return 0


async def _read_orders(stream: asyncio.StreamReader, worker: SimWorker) -> None:
    async for item in read_messages(stream, wp.ORDERS):
        if isinstance(item, wp.ProtocolError):
            log.warning("ignored a bad order line: %s", item)
            continue
        worker.submit(item)


async def _shutdown(worker: SimWorker) -> None:
    await worker.drain()
    await worker.stop_all()
