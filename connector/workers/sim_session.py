"""One simulated WhatsApp session: an account's session file and its socket to sim-server.

Plays whatsmeow's part against the simulated service: reads the device row,
logs in with its fingerprint, pairs by QR when there is none (writing the new
device into the file, whatsmeow's schema), pings for keepalive, churns keys
while connected, deletes the device row on a 401 as whatsmeow does, and
reconnects by `connector.workers.policy`. Usable in-process (tests) or inside
the sim worker process, which runs many of these. Never imports neonize.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from connector.clock import Clock, SystemClock
from connector.errors import KeeperError
from connector.sessions import whatsmeow
from connector.sim import wire
from connector.sim.churn import churn, churn_delays
from connector.tasks import cancel_and_wait
from connector.workers import protocol as wp
from connector.workers.policy import Ending, reconnect_delay

log = logging.getLogger(__name__)
T = TypeVar("T")

LOGOUT_ANSWER_S = 10.0
DISK_THREADS = 2
_disk = ThreadPoolExecutor(max_workers=DISK_THREADS, thread_name_prefix="sim-disk")
"""Session-file I/O of all sessions of the process: a few threads, not asyncio's default
pool of up to 32; each thread gets its own malloc arena of SQLite pages, so a
small pool keeps a worker with 500 accounts at a fraction of the memory."""


async def _on_disk(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_disk, function, *args)


LOGGED_OUT_CODES = frozenset({401, 403, 406})


class OrderRejected(KeeperError):
    """An order that cannot be carried out in the session's present state."""


@dataclass(frozen=True)
class SimLink:
    """Where and as whom a session logs in."""

    server_url: str
    http: aiohttp.ClientSession
    label: str = ""


class SimSession:
    def __init__(
        self,
        account: str,
        session_path: Path,
        link: SimLink,
        emit: Callable[[wp.Message], None],
        *,
        template: Callable[[], Awaitable[Path]],
        clock: Clock | None = None,
        churn_phase: Callable[[], float] = random.random,
    ) -> None:
        """`churn_phase`: where in its interval each connection's key churn starts (0 to 1)."""
        self.account, self.path, self._link, self._emit = account, session_path, link, emit
        self._template, self._clock, self._churn_phase = template, clock or SystemClock(), churn_phase
        self.jid: str | None = None
        self._opened = False  # the file was read without error: pairing or logging in makes sense
        self._noise_key: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = False
        self._logout_done = asyncio.Event()
        self._pong = asyncio.Event()
        self.churned = asyncio.Event()  # set after each key churn write (tests wait on it)

    @property
    def running(self) -> bool:
        """Whether the session is logging in, logged in, or waiting to log in again."""
        return self._task is not None and not self._task.done()

    # -- orders ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session file (made from the template if missing), report it, log in if paired."""
        try:
            if not self.path.exists() or self.path.stat().st_size == 0:
                await _on_disk(whatsmeow.copy_template, await self._template(), self.path)
            identity = await _on_disk(_read_device, self.path)
        except (sqlite3.Error, OSError) as exc:
            self._emit(wp.Fatal(account=self.account, message=f"session database {self.path}: {exc}"))
            return
        self.jid, self._noise_key = identity if identity else (None, None)
        self._opened = True
        self._emit(wp.Loaded(account=self.account, jid=self.jid))
        if self.jid is not None:
            self._task = asyncio.create_task(self._run(pairing=False))

    async def pair(self) -> None:
        if not self._opened:
            raise OrderRejected("the session file could not be opened")
        if self.jid is not None:
            raise OrderRejected(f"already paired as {self.jid}")
        if self._task is not None and not self._task.done():
            raise OrderRejected("pairing already in progress")
        self._task = asyncio.create_task(self._run(pairing=True))

    async def logout(self) -> None:
        """Unlink the device at the server, delete it from the file (whatsmeow's Logout), stop."""
        if not self.connected or self._ws is None:
            self._emit(wp.Fatal(account=self.account, message="logout: not connected, WhatsApp was not told"))
            await self.stop()
            return
        self._logout_done.clear()
        try:
            await self._ws.send_str(wire.dump(wire.LogoutRequest()))
            await asyncio.wait_for(self._logout_done.wait(), LOGOUT_ANSWER_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._emit(
                wp.Fatal(account=self.account, message=f"logout: no answer in {LOGOUT_ANSWER_S:.0f} s")
            )
        else:
            await _on_disk(whatsmeow.delete_device, self.path)
            self.jid = None
        await self.stop()

    async def drop(self, reason: str) -> None:
        """Close the socket and stay closed (no reconnect) until stopped; reports `disconnected`."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._emit(wp.Disconnected(account=self.account, reason=reason[:500]))

    async def stop(self) -> None:
        """Close the socket and end the session's tasks; always answers `stopped`."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        self._emit(wp.Stopped(account=self.account))

    # -- the connection loop ------------------------------------------------------------

    async def _run(self, pairing: bool) -> None:
        failures, reconnecting = 0, False
        while True:
            ending, logged_in = await self._connection(pairing, quiet=reconnecting)
            pairing = False
            if logged_in:
                failures, reconnecting = 0, True
            delay = reconnect_delay(ending, failures, reconnecting)
            if delay is None:
                return
            failures += 1
            await self._clock.sleep(delay)

    async def _connection(self, pairing: bool, quiet: bool) -> tuple[Ending, bool]:
        try:
            ws = await self._link.http.ws_connect(
                self._link.server_url.rstrip("/") + "/ws", max_msg_size=wire.MAX_FRAME_BYTES
            )
        except (aiohttp.ClientError, OSError) as exc:
            if not quiet:
                self._emit(
                    wp.Disconnected(account=self.account, reason=f"cannot reach WhatsApp (sim): {exc}"[:500])
                )
            return Ending.UNREACHABLE, False
        self._ws, helpers = ws, _Helpers()
        try:
            keys = whatsmeow.DeviceKeys.random(jid="pending") if pairing else None
            if keys is not None:
                await ws.send_str(wire.dump(wire.PairRequest(**self._who(keys.noise_key, with_jid=False))))
            else:
                await ws.send_str(wire.dump(wire.Hello(**self._who(self._noise_key, with_jid=True))))
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                ending = await self._on_frame(wire.load(message.data, wire.TO_WORKER), keys, helpers)
                if ending is not None:
                    return ending, helpers.logged_in
            code = 428 if ws.close_code == wire.DROP_CLOSE_CODE else None
            why = "connection dropped" if code else f"connection closed (websocket code {ws.close_code})"
            self._emit(wp.Disconnected(account=self.account, reason=why, code=code))
            return Ending.DROPPED, helpers.logged_in
        except wire.SimWireError as exc:
            self._emit(wp.Disconnected(account=self.account, reason=f"protocol error from server: {exc}"))
            return Ending.DROPPED, helpers.logged_in
        finally:
            self.connected, self._ws = False, None
            await helpers.cancel()
            await ws.close()

    def _who(self, noise_key: bytes | None, with_jid: bool) -> dict[str, str]:
        who = {
            "account": self.account,
            "noise_fp": wire.fingerprint(noise_key or b""),
            "label": self._link.label,
        }
        return {**who, "jid": self.jid or ""} if with_jid else who

    async def _on_frame(
        self, frame: wire.Frame, keys: whatsmeow.DeviceKeys | None, helpers: _Helpers
    ) -> Ending | None:
        """Act on one frame from the server; an Ending when the connection is over."""
        a = self.account
        match frame:
            case wire.QrCode(code=code, expires_at=expires_at):
                self._emit(wp.Qr(account=a, code=code, expires_at=expires_at))
            case wire.PairSuccess(jid=jid) if keys is not None and self._ws is not None:
                device = replace(keys, jid=jid)
                await _on_disk(whatsmeow.write_device, self.path, device)
                self.jid, self._noise_key = jid, device.noise_key
                self._emit(wp.Paired(account=a, jid=jid))
                await self._ws.send_str(wire.dump(wire.Hello(**self._who(self._noise_key, with_jid=True))))
            case wire.PairTimeout():
                self._emit(wp.Disconnected(account=a, reason="pairing timed out: no QR code was scanned"))
                return Ending.FINAL
            case wire.Welcome(keepalive_ms=keepalive_ms, churn_ms=churn_ms):
                self.connected, helpers.logged_in = True, True
                self._emit(wp.Connected(account=a))
                helpers.start(self._keepalive(keepalive_ms / 1000), self._churn(churn_ms / 1000))
            case wire.Pong():
                self._pong.set()
            case wire.LoggedOutFrame(reason_code=code, on_connect=on_connect):
                if code in LOGGED_OUT_CODES:  # whatsmeow's Store.Delete, before the event
                    await _on_disk(whatsmeow.delete_device, self.path)
                    self.jid = None
                self._emit(wp.LoggedOut(account=a, reason_code=code, on_connect=on_connect))
                return Ending.FINAL
            case wire.StreamReplacedFrame():
                self._emit(wp.StreamReplaced(account=a))
                return Ending.FINAL
            case wire.StreamErrorFrame(code=code):
                self._emit(wp.StreamError(account=a, code=code))
                return Ending.RESTART if code == 515 else Ending.DROPPED
            case wire.TemporaryBanFrame(code=code, expires_at=expires_at):
                self._emit(wp.TemporaryBan(account=a, code=code, expires_at=expires_at))
                return Ending.FINAL
            case wire.ClientOutdatedFrame():
                self._emit(wp.ClientOutdated(account=a))
                return Ending.FINAL
            case wire.ConnectFailureFrame(code=code, message=text):
                self._emit(wp.Disconnected(account=a, reason=f"connect failure {code}: {text}", code=code))
                return Ending.SERVER_ERROR if code in (500, 503) else Ending.FINAL
            case wire.LogoutDone():
                self._logout_done.set()
                return Ending.FINAL
            case _:
                raise wire.SimWireError(f"unexpected {frame.OP} now")
        return None

    async def _keepalive(self, interval_s: float) -> None:
        """Ping every interval; a ping unanswered within half of it is a keepalive timeout."""
        seq, failures = 0, 0
        while self._ws is not None:
            await self._clock.sleep(interval_s)
            seq += 1
            self._pong.clear()
            await self._ws.send_str(wire.dump(wire.Ping(seq=seq)))
            try:
                await asyncio.wait_for(self._pong.wait(), interval_s / 2)
            except TimeoutError:
                failures += 1
                self._emit(wp.KeepaliveTimeout(account=self.account, count=failures))
                continue
            if failures:
                failures = 0
                self._emit(wp.KeepaliveRestored(account=self.account))

    async def _churn(self, interval_s: float) -> None:
        if interval_s <= 0:
            return
        for delay in churn_delays(interval_s, self._churn_phase()):
            if self.jid is None:
                return
            await self._clock.sleep(delay)
            if self.jid is not None:
                await _on_disk(churn, self.path, self.jid)
                self.churned.set()


class _Helpers:
    """The tasks that live as long as one logged-in connection."""

    def __init__(self) -> None:
        self.logged_in = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *coroutines: Coroutine[Any, Any, None]) -> None:
        self._tasks += [asyncio.create_task(c) for c in coroutines]

    async def cancel(self) -> None:
        """Cancel the helpers and wait for them; a socket or disk error of a helper ends with it,
        anything else is raised. A cancellation of the caller itself (the session's `stop`
        arriving meanwhile) propagates: swallowing it made the connection loop reconnect
        instead of ending, and `stop` then waited forever (the e2e 515-then-drop test, under load)."""
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, _HELPER_ENDINGS):
                raise result


_HELPER_ENDINGS = (asyncio.CancelledError, ConnectionError, RuntimeError, sqlite3.Error)
"""How a cancelled helper may end without that being a fault."""


def _read_device(path: Path) -> tuple[str, bytes] | None:
    if not whatsmeow.has_table(path, whatsmeow.DEVICE_TABLE):
        raise sqlite3.DatabaseError("no whatsmeow_device table: not a whatsmeow session")
    return whatsmeow.read_identity(path)
