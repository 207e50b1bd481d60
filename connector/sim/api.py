"""The sim-server's HTTP API for tests and the demo (routes listed in connector/sim/server.py).

Every error is a JSON body `{"error": "..."}` with a 4xx status; a malformed
call never disturbs the websocket side.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from connector.sim import wire
from connector.sim.faults import NEEDS_LIVE, Fault, FaultError, parse_fault
from connector.sim.links import LiveDevice
from connector.sim.registry import LOGOUT_CODE, Account
from wa_wire.codec import utc_timestamp

if TYPE_CHECKING:
    from connector.sim.server import SimServer


class SimApi:
    def __init__(self, sim: SimServer) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/health", self.health),
            web.get("/api/qr", self.list_qr),
            web.post("/api/scan", self.scan),
            web.get("/api/accounts/{account}", self.account),
            web.post("/api/accounts/{account}/faults", self.inject),
            web.get("/api/devices", self.devices),
            web.get("/api/connections", self.connections),
        ]

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def list_qr(self, _request: web.Request) -> web.Response:
        pending = [
            {"account": p.account, "code": p.code, "expires_at": p.expires_at}
            for p in self.sim.pending.values()
        ]
        return web.json_response({"pending": pending})

    async def scan(self, request: web.Request) -> web.Response:
        body = await _body(request)
        code, account = body.get("code"), body.get("account")
        if not (isinstance(code, str) or isinstance(account, str)) or set(body) - {"code", "account"}:
            raise _fail(web.HTTPBadRequest, "give the QR code as {'code': ...} or {'account': ...}")
        matches = [
            p for p in self.sim.pending.values() if p.code == code or (code is None and p.account == account)
        ]
        if not matches or matches[0].scanned.done():
            raise _fail(web.HTTPNotFound, "no such pending QR code")
        pending = matches[0]
        device, replaced = self.sim.registry.link(pending.account, pending.noise_fp, self.sim.clock.now())
        if replaced is not None and replaced.jid in self.sim.live:
            await self.sim.live[replaced.jid].kick(wire.LoggedOutFrame(reason_code=LOGOUT_CODE), "replaced")
        pending.scanned.set_result(device.jid)
        return web.json_response({"account": pending.account, "jid": device.jid})

    async def account(self, request: web.Request) -> web.Response:
        record = self._known(request.match_info["account"])
        return web.json_response(
            {
                "account": record.account,
                "phone": record.phone,
                "jid": record.jid,
                "ban_until": utc_timestamp(record.ban_until) if record.ban_until else None,
                "silenced": record.silenced,
                "live": [d.conn_id for d in self.sim.live.values() if d.account == record.account],
            }
        )

    async def inject(self, request: web.Request) -> web.Response:
        record = self._known(request.match_info["account"])
        try:
            fault = parse_fault(await _body(request))
        except FaultError as exc:
            raise _fail(web.HTTPBadRequest, str(exc)) from exc
        live = [d for d in self.sim.live.values() if d.account == record.account]
        needs_live = fault.kind in NEEDS_LIVE or (fault.kind == "logout" and fault.when == "now")
        if needs_live and not live:
            raise _fail(web.HTTPConflict, f"{fault.kind}: {record.account} has no live connection")
        await self._apply(fault, record.account, live)
        return web.json_response(
            {"account": record.account, "fault": fault.kind, "live_connections": len(live)}
        )

    async def _apply(self, fault: Fault, account: str, live: list[LiveDevice]) -> None:
        record = self.sim.registry.account(account)
        kick: tuple[wire.Frame | None, int] | None = None
        if fault.kind == "logout" and fault.when == "next_connect":
            record.logout_next_connect = True
        elif fault.kind in ("logout", "unlink"):
            if fault.kind == "unlink":
                self.sim.registry.unlink(account)
            kick = (wire.LoggedOutFrame(reason_code=LOGOUT_CODE, on_connect=False), 1000)
        elif fault.kind == "restart":
            kick = (wire.StreamErrorFrame(code=515), 1000)
        elif fault.kind == "drop":
            kick = (None, wire.DROP_CLOSE_CODE)
        elif fault.kind == "ban":
            record.ban_until = self.sim.clock.now() + timedelta(seconds=fault.expires_in_s or 0)
            record.ban_code = fault.code or 101
            kick = (
                wire.TemporaryBanFrame(code=record.ban_code, expires_at=utc_timestamp(record.ban_until)),
                1000,
            )
        elif fault.kind in ("server_error", "outdated"):
            code = fault.code if fault.kind == "server_error" else 405
            record.failures_next_connects.extend([code or 503] * fault.count)
            kick = (None, wire.DROP_CLOSE_CODE) if fault.kind == "server_error" else None
        elif fault.kind in ("silence", "unsilence"):
            record.silenced = fault.kind == "silence"
        if kick is not None:
            for device in live:
                await device.kick(kick[0], fault.kind, kick[1])

    async def devices(self, _request: web.Request) -> web.Response:
        devices = [
            {"jid": d.jid, "account": d.account, "linked_at": d.linked_at}
            for d in self.sim.registry.devices.values()
        ]
        return web.json_response({"devices": devices})

    async def connections(self, request: web.Request) -> web.Response:
        unknown = set(request.query) - {"jid", "account"}
        if unknown:
            raise _fail(web.HTTPBadRequest, f"unknown query parameter {sorted(unknown)[0]!r}")
        records = self.sim.registry.connections(
            jid=request.query.get("jid"), account=request.query.get("account")
        )
        return web.json_response({"connections": [asdict(r) for r in records]})

    def _known(self, account: str) -> Account:
        if account not in self.sim.registry.accounts:
            raise _fail(web.HTTPNotFound, f"unknown account {account[:80]!r}")
        return self.sim.registry.accounts[account]


def _fail(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(web.HTTPBadRequest, "body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise _fail(web.HTTPBadRequest, "body must be a JSON object")
    return body


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """HTTP errors as JSON bodies, so every 4xx says what was wrong."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    return response
