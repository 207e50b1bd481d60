"""`wa-keeper sim-server`: a loopback stand-in for WhatsApp's servers (aiohttp).

Faithful where session stability is concerned: pairing by QR, a registry of the
devices linked to each account checked at every login (unknown, unlinked,
replaced or foreign devices get 401 like on WhatsApp; an older backup of a
linked device gets in), a second login of one device kicks the first with
`stream_replaced`, injectable faults, and a record of every connection interval
per device so tests can prove no device was driven from two places at once.

Websocket `GET /ws` (frames in `connector.sim.wire`):
  worker: hello{account, jid, noise_fp, label} -> connected{conn_id, keepalive_ms,
  churn_ms} or a refusal (logged_out 401 / temporary_ban 402 / client_outdated /
  connect_failure 5xx) and close. Then ping{seq} -> pong{seq} (not while silenced),
  logout -> logout_ok and close. With no device: pair{account, noise_fp, label} ->
  qr{code, expires_at} (rotating) ... pair_success{jid} (then hello) or pair_timeout.
  The server may push logged_out, stream_replaced, stream_error{515},
  temporary_ban, or just close with code 4428 (a drop).

HTTP API (JSON; malformed calls get 4xx and the server keeps serving):
  GET  /api/health                        {"ok": true}
  GET  /api/qr                            pending QR codes {"pending": [{account, code, expires_at}]}
  POST /api/scan {"code"} | {"account"}   "scan" a pending code: links a device -> {account, jid}
  GET  /api/accounts/{account}            {account, phone, jid, ban_until, silenced, live}
  POST /api/accounts/{account}/faults     inject a fault (see connector.sim.faults)
  GET  /api/devices                       linked devices {"devices": [{jid, account, linked_at}]}
  GET  /api/connections?jid=..|account=.. {"connections": [{conn_id, account, jid, label, start,
                                          end, end_reason}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from connector.clock import Clock, SystemClock
from connector.sim import wire
from connector.sim.api import SimApi, json_errors
from connector.sim.links import Link, LiveDevice
from connector.sim.registry import Registry
from wa_wire.codec import utc_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    keepalive_ms: int = 20_000
    churn_ms: int = 10_000
    first_qr_s: float = 60.0
    next_qr_s: float = 20.0
    qr_codes: int = 6
    hello_timeout_s: float = 30.0


@dataclass
class PendingPairing:
    account: str
    noise_fp: str
    code: str
    expires_at: str
    scanned: asyncio.Future[str]


class SimServer:
    def __init__(self, config: SimConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or SystemClock()
        self.registry = Registry()
        self.live: dict[str, LiveDevice] = {}  # by jid
        self.pending: dict[str, PendingPairing] = {}  # by QR code

    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors])
        app.add_routes([web.get("/ws", self.websocket), *SimApi(self).routes()])
        return app

    # -- websocket ------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME_BYTES)
        await ws.prepare(request)
        link = Link(ws)
        try:
            first = await link.next_frame(self.config.hello_timeout_s)
            if isinstance(first, wire.PairRequest):
                if not await self._pair(link, first):
                    return ws
                first = await link.next_frame(self.config.hello_timeout_s)
            if first is None:
                return ws
            if not isinstance(first, wire.Hello):
                raise wire.SimWireError(f"expected hello, got {first.OP}")
            await self._logged_in(link, first)
        except wire.SimWireError as exc:
            log.info("protocol error on /ws: %s", exc)
            await link.close(wire.PROTOCOL_CLOSE_CODE, str(exc))
        except TimeoutError:
            await link.close(wire.PROTOCOL_CLOSE_CODE, "no hello in time")
        finally:
            await link.close()
            await link.finish()
        return ws

    async def _pair(self, link: Link, request: wire.PairRequest) -> bool:
        """Show rotating QR codes until one is scanned (True) or all expire (False)."""
        self.registry.account(request.account)
        scanned: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        frame_task = link.next_frame_task()
        try:
            for index in range(self.config.qr_codes):
                ttl = self.config.first_qr_s if index == 0 else self.config.next_qr_s
                code = f"2@{secrets.token_urlsafe(18)},{request.noise_fp}"
                expires_at = utc_timestamp(self.clock.now() + timedelta(seconds=ttl))
                self.pending[code] = PendingPairing(
                    request.account, request.noise_fp, code, expires_at, scanned
                )
                await link.send(wire.QrCode(code=code, expires_at=expires_at))
                try:
                    waiting: list[asyncio.Future[Any]] = [scanned, frame_task]
                    done, _ = await asyncio.wait(waiting, timeout=ttl, return_when="FIRST_COMPLETED")
                finally:
                    self.pending.pop(code, None)
                if scanned in done:
                    await link.send(wire.PairSuccess(jid=scanned.result()))
                    return True
                if frame_task in done:  # the worker hung up or spoke out of turn
                    if Link.parse(frame_task.result()) is not None:
                        raise wire.SimWireError("unexpected frame while pairing")
                    return False
            await link.send(wire.PairTimeout())
            return False
        finally:
            frame_task.cancel()

    async def _logged_in(self, link: Link, hello: wire.Hello) -> None:
        refusal = self.registry.admit(hello, self.clock.now())
        if refusal is not None:
            await link.send(refusal)
            return
        older = self.live.get(hello.jid)
        if older is not None:  # the same device from elsewhere: the newer login wins
            if older.end_reason is None and not older.link.ws.closed:
                self.registry.close_record(older.conn_id, "stream_replaced", self.clock.now())
                await older.kick(wire.StreamReplacedFrame(), "stream_replaced")
            else:  # already ending (a drop, a stop) and not yet cleaned up: not a replacement
                self.registry.close_record(older.conn_id, older.end_reason or "closed", self.clock.now())
        record = self.registry.open_record(hello.account, hello.jid, hello.label, self.clock.now())
        live = LiveDevice(link, hello.account, hello.jid, record.conn_id)
        self.live[hello.jid] = live
        config = self.config
        await link.send(
            wire.Welcome(conn_id=record.conn_id, keepalive_ms=config.keepalive_ms, churn_ms=config.churn_ms)
        )
        try:
            while (frame := await link.next_frame()) is not None:
                if isinstance(frame, wire.Ping):
                    if not self.registry.account(hello.account).silenced:
                        await link.send(wire.Pong(seq=frame.seq))
                elif isinstance(frame, wire.LogoutRequest):
                    self.registry.unlink(hello.account)
                    await link.send(wire.LogoutDone())
                    await live.kick(None, "logout")
                else:
                    raise wire.SimWireError(f"unexpected {frame.OP} after login")
        finally:
            if self.live.get(hello.jid) is live:
                del self.live[hello.jid]
            self.registry.close_record(record.conn_id, live.end_reason or "closed", self.clock.now())

    async def close(self) -> None:
        for device in list(self.live.values()):
            await device.kick(None, "server_shutdown", 1001)


@dataclass
class RunningServer:
    """A started sim-server; `url` has the bound port (port 0 picks a free one)."""

    sim: SimServer
    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        await self.sim.close()
        with contextlib.suppress(Exception):
            await self.runner.cleanup()


async def start_server(
    host: str = "127.0.0.1", port: int = 8765, config: SimConfig | None = None, clock: Clock | None = None
) -> RunningServer:
    sim = SimServer(config, clock)
    runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return RunningServer(sim=sim, runner=runner, url=f"http://{bound_host}:{bound_port}")
