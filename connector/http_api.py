"""The connector's HTTP endpoints, on loopback by default (settings.http_host/http_port).

`/healthz`  the process is alive (200, nothing checked).
`/readyz`   every registered readiness check passes: 200, else 503 naming the failing ones.
            Components register named checks (Firestore reachable, listener alive,
            leases renewing, ...): a callable, sync or async, returning (ok, detail).
`/metrics`  Prometheus text of the connector's registry.
`/status`   JSON of the held accounts, from a provider the supervisor injects.

The provider and the checks must not return secrets (QR codes, keys): this is
plain HTTP, readable by anyone on the host.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from connector.errors import KeeperError
from connector.settings import Settings

log = logging.getLogger(__name__)

CheckResult = tuple[bool, str]
ReadinessCheck = Callable[[], CheckResult | Awaitable[CheckResult]]
StatusProvider = Callable[[], Any]
"""Returns (or awaits to) a JSON-serialisable object."""

DEFAULT_CHECK_TIMEOUT_S = 2.0


class HttpApiError(KeeperError):
    """The HTTP endpoint cannot start, or a readiness check is registered twice."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class Readiness:
    """Named readiness checks; `/readyz` passes when all of them do."""

    def __init__(self, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> None:
        self._checks: dict[str, ReadinessCheck] = {}
        self._timeout_s = timeout_s

    def register(self, name: str, check: ReadinessCheck) -> None:
        if name in self._checks:
            raise HttpApiError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def unregister(self, name: str) -> None:
        self._checks.pop(name, None)

    async def evaluate(self) -> dict[str, CheckResult]:
        """Run every check at once; one that raises, hangs or answers wrongly fails."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, check: ReadinessCheck) -> CheckResult:
        try:
            result: Any = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self._timeout_s)
        except TimeoutError:
            return False, f"no answer within {self._timeout_s:g} s"
        except Exception as exc:
            return False, _one_line(exc)
        if not (
            isinstance(result, tuple)
            and len(result) == 2
            and isinstance(result[0], bool)
            and isinstance(result[1], str)
        ):
            return False, "the check did not return (ok, detail)"
        return result[0], result[1]


def build_app(registry: CollectorRegistry, readiness: Readiness, status: StatusProvider) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        results = await readiness.evaluate()
        failing = sorted(name for name, (ok, _) in results.items() if not ok)
        body = {
            "ready": not failing,
            "failing": failing,
            "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()},
        }
        return web.json_response(body, status=503 if failing else 200)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_json(_request: web.Request) -> web.Response:
        try:
            data = status()
            if inspect.isawaitable(data):
                data = await data
            text = json.dumps(data)
        except Exception as exc:
            log.warning("/status failed: %s", _one_line(exc))
            return web.json_response({"error": _one_line(exc)}, status=500)
        return web.Response(text=text, content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status_json)
    return app


class HttpApi:
    """The aiohttp server of the endpoints; `start`/`stop` from the supervisor's loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry,
        readiness: Readiness,
        status: StatusProvider,
    ) -> None:
        self.host = host
        self._port = port
        self._app = build_app(registry, readiness, status)
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, registry: CollectorRegistry, readiness: Readiness, status: StatusProvider
    ) -> HttpApi:
        return cls(
            settings.http_host, settings.http_port, registry=registry, readiness=readiness, status=status
        )

    async def start(self) -> None:
        """Listen; port 0 picks a free port (read it from `port`)."""
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise HttpApiError(
                f"cannot listen on {self.host}:{self._port} (WA_KEEPER_HTTP_PORT): {reason}"
            ) from exc
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
