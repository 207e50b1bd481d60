"""`wa-keeper worker --transport neonize`: one real WhatsApp session per process.

neonize cannot be trusted inside the daemon (NOTES.md), so each session runs
here, alone. The rules this module keeps:
- fd 1 is taken for the protocol before neonize loads (its Go side prints there);
  logs go to stderr, neonize's own logger at WARNING;
- the session file is never opened with sqlite3 here: neonize's own
  `GetAllDevices` (Go's SQLite) says whether it is paired, and reports a corrupt
  file as an error string instead of aborting;
- every lifecycle handler is registered before `connect()`, which blocks and so
  runs in a thread; handlers only hand the event to the asyncio loop;
- never `get_me()` (aborts before connect and after stop), `logout()` only while
  connected (Go dereferences a missing client), one account per process;
- `stop` and SIGTERM end the process within `STOP_BOUND_S` even when neonize's
  `stop()` hangs (it can block a minute during a hanging dial): os._exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from connector.clock import Clock, SystemClock
from connector.workers import protocol as wp
from connector.workers.hold import Holds, expired_reason
from connector.workers.neonize_events import (
    LIFECYCLE_EVENTS,
    SessionDatabaseError,
    parse_device_list,
    qr_report,
    translate,
)
from connector.workers.reader import read_messages, stdin_reader
from connector.workers.writer import ReportWriter, claim_stdout

log = logging.getLogger(__name__)

STOP_BOUND_S = 4.0
QUIET_LOGGERS = ("neonize", "whatsmeow", "Whatsmeow")


class NeonizeSession:
    """The one account of this process; every method runs on the asyncio loop."""

    def __init__(self, emit: Any, proxy: str | None, clock: Clock, client_class: Any) -> None:
        self._emit, self._proxy, self._clock, self._client_class = emit, proxy, clock, client_class
        self._loop = asyncio.get_running_loop()
        self.account: str | None = None
        self._path: Path | None = None
        self._client: Any = None
        self._connect_thread: threading.Thread | None = None
        self._connect_over = asyncio.Event()
        self._paired = False
        self._opened = False  # loaded without error: pairing or connecting makes sense
        self._pairing_over = False  # QR codes ran out, pairing failed, or the dial failed
        self._connected = False
        self._qr_index = 0

    def start(self, order: wp.Start) -> wp.Message | None:
        """Open the session; a rejection when this process already serves an account."""
        if self.account is not None:
            return wp.Rejected(
                account=order.account,
                order="start",
                reason=f"this worker serves {self.account}; one per process",
            )
        self.account, self._path = order.account, Path(order.session_path)
        if not self._path.is_file():
            self._emit(wp.Fatal(account=self.account, message=f"session file not found: {self._path}"))
            return None
        try:
            jids = parse_device_list(_neonize_devices(self._path))
        except SessionDatabaseError as exc:
            self._emit(wp.Fatal(account=self.account, message=f"session database {self._path}: {exc}"))
            return None
        self._paired, self._opened = bool(jids), True
        self._emit(wp.Loaded(account=self.account, jid=jids[0] if jids else None))
        if self._paired:
            self._connect()
        return None

    def pair(self, order: wp.Pair) -> wp.Message | None:
        if order.account != self.account or self._path is None:
            return wp.Rejected(account=order.account, order="pair", reason="not started")
        if not self._opened:
            return wp.Rejected(
                account=order.account, order="pair", reason="the session file could not be opened"
            )
        if self._paired:
            return wp.Rejected(account=order.account, order="pair", reason="the session is already paired")
        if self._pairing_over:
            reason = "this pairing has ended; start a new worker to pair again"
            return wp.Rejected(account=order.account, order="pair", reason=reason)
        if self._connect_thread is not None:
            return wp.Rejected(account=order.account, order="pair", reason="pairing already in progress")
        self._connect()
        return None

    def _connect(self) -> None:
        """Create the client, register every handler, then connect in a thread (it blocks)."""
        from neonize._binder import ProxySettings  # noqa: PLC0415 - neonize only in the worker process
        from neonize.events import EVENT_TO_INT  # noqa: PLC0415

        assert self.account is not None and self._path is not None
        client = self._client_class(str(self._path), uuid=self.account)
        client.status_sink = self._hand_off_status
        lifecycle = [c for c in EVENT_TO_INT if c.DESCRIPTOR.name in LIFECYCLE_EVENTS]
        assert len(lifecycle) == len(LIFECYCLE_EVENTS), "neonize renamed a lifecycle event"
        for event_class in lifecycle:
            client.event(event_class)(self._hand_off_event)
        client.qr(self._hand_off_qr)
        proxy = ProxySettings(proxy_address=self._proxy) if self._proxy else None
        self._client = client

        def run() -> None:
            error: str | None = None
            try:
                client.connect(proxy)
            except Exception as exc:  # neonize reports failures as exceptions; we report them as messages
                error = str(exc) or type(exc).__name__
            self._loop.call_soon_threadsafe(self._connect_ended, error)

        self._connect_thread = threading.Thread(target=run, name=f"neonize-{self.account}", daemon=True)
        self._connect_thread.start()

    # -- hand-offs from neonize's threads: keep them short ---------------------------------

    def _hand_off_event(self, _client: Any, event: Any) -> None:
        self._loop.call_soon_threadsafe(self._on_event, event)

    def _hand_off_qr(self, _client: Any, code: bytes) -> None:
        self._loop.call_soon_threadsafe(self._on_qr, code)

    def _hand_off_status(self, status: str) -> None:
        self._loop.call_soon_threadsafe(self._on_status, status)

    # -- on the loop ----------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        assert self.account is not None
        message = translate(self.account, event, self._clock.now())
        if message is None:
            return
        if isinstance(message, wp.Paired):
            self._paired = True
        if isinstance(message, wp.Connected):
            self._connected = True
        elif isinstance(message, wp.Disconnected | wp.LoggedOut | wp.StreamReplaced | wp.TemporaryBan):
            self._connected = False
        self._emit(message)

    def _on_qr(self, code: bytes) -> None:
        assert self.account is not None
        self._emit(qr_report(self.account, code, self._qr_index, self._clock.now()))
        self._qr_index += 1

    def _on_status(self, status: str) -> None:
        assert self.account is not None
        if status in ("timeout", "error"):
            self._pairing_over = True
            self._emit(wp.Disconnected(account=self.account, reason=f"pairing ended: {status}"))

    def _connect_ended(self, error: str | None) -> None:
        self._connected, self._pairing_over = False, not self._paired
        self._connect_over.set()
        if error is None or self.account is None:
            return
        if "dial" in error or "websocket" in error:
            self._emit(wp.Disconnected(account=self.account, reason=error[:1000]))
        else:
            self._emit(wp.Fatal(account=self.account, message=f"neonize: {error}"[:1000]))

    async def logout(self) -> None:
        assert self.account is not None
        if not self._connected:
            self._emit(wp.Fatal(account=self.account, message="logout: not connected, WhatsApp was not told"))
            return
        try:
            await asyncio.to_thread(self._client.logout)
        except Exception as exc:
            self._emit(wp.Fatal(account=self.account, message=f"logout failed: {exc}"[:1000]))

    async def stop(self) -> None:
        """Ask neonize to stop and wait for `connect()` to return, within the bound."""
        if self._client is None or self._connect_over.is_set():
            return
        threading.Thread(target=self._client.stop, name="neonize-stop", daemon=True).start()
        try:
            await asyncio.wait_for(self._connect_over.wait(), STOP_BOUND_S)
        except TimeoutError:
            log.warning("neonize did not stop within %.0f s; exiting anyway", STOP_BOUND_S)


def _neonize_devices(path: Path) -> bytes:
    """neonize's raw device list of a session file (Go's SQLite, never Python's here)."""
    from neonize._binder import func_callback_bytes2, gocode  # noqa: PLC0415
    from neonize.utils.log import log_whatsmeow  # noqa: PLC0415

    callback = func_callback_bytes2(log_whatsmeow)
    raw: bytes = gocode.GetAllDevices(str(path).encode(), callback)
    return raw


def client_class() -> Any:
    from neonize.client import NewClient  # noqa: PLC0415

    class Client(NewClient):  # type: ignore[misc]
        """NewClient that hands pairing status ("success", "timeout") to us instead of print()."""

        status_sink: Any = None

        def _NewClient__onLoginStatus(self, _uuid: int, status: bytes) -> None:
            if self.status_sink is not None:
                self.status_sink(
                    status.decode(errors="replace") if isinstance(status, bytes) else str(status)
                )

    return Client


async def serve(proxy: str | None, clock: Clock | None = None) -> int:
    writer = claim_stdout()
    _tame_logging()
    session = NeonizeSession(writer.emit, proxy, clock or SystemClock(), client_class())
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)

    def hold_expired(account: str) -> None:
        """The supervisor went silent: report it and end, like a stop (this process is one account)."""
        log.warning("%s", expired_reason(account))
        writer.emit(wp.Disconnected(account=account, reason=expired_reason(account)[:500]))
        stopping.set()

    holds = Holds(hold_expired)
    orders = asyncio.create_task(_read_orders(session, writer, stopping, holds))
    await stopping.wait()
    orders.cancel()
    await session.stop()
    if session.account is not None:
        writer.emit(wp.Stopped(account=session.account))
    os._exit(0)  # neonize's threads (and a hung stop) must not keep the process alive


async def _read_orders(
    session: NeonizeSession, writer: ReportWriter, stopping: asyncio.Event, holds: Holds
) -> None:
    async for item in read_messages(await stdin_reader(), wp.ORDERS):
        if isinstance(item, wp.ProtocolError):
            log.warning("ignored a bad order line: %s", item)
            continue
        if isinstance(item, wp.Start | wp.Hold) and session.account in (None, item.account):
            holds.extend(item.account, item.hold_ms if isinstance(item, wp.Start) else item.for_ms)
            if isinstance(item, wp.Hold):
                continue
        try:
            reply, last = await _dispatch(session, item)
        except Exception as exc:  # a bug of ours or neonize's: a report, not a traceback on stdout
            log.exception("%s order failed", item.TYPE)
            reply, last = wp.Fatal(account=item.account, message=f"{item.TYPE} failed: {exc}"[:1000]), False
        if reply is not None:
            writer.emit(reply)
        if last:
            break
    stopping.set()  # stop, logout or EOF (the supervisor is gone)


async def _dispatch(session: NeonizeSession, order: wp.Message) -> tuple[wp.Message | None, bool]:
    """Carry out one order: (a reply to write or None, whether it ends the worker)."""
    if isinstance(order, wp.Start):
        return session.start(order), False
    if order.account != session.account:
        return wp.Rejected(account=order.account, order=order.TYPE, reason="not started"), False
    if isinstance(order, wp.Pair):
        return session.pair(order), False
    if isinstance(order, wp.Logout):
        await session.logout()
    return None, True  # logout or stop


def _tame_logging() -> None:
    """Logs to stderr; neonize's Go debug chatter off (it crosses into Python otherwise)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("neonize.utils.log").setLevel(logging.WARNING)
    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
