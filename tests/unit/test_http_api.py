"""The HTTP endpoints on a real aiohttp server (port 0), called over its socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from connector.http_api import CheckResult, HttpApi, HttpApiError, Readiness, StatusProvider
from connector.metrics import ConnectorMetrics
from connector.settings import load_settings


@dataclass
class Served:
    api: HttpApi
    readiness: Readiness
    metrics: ConnectorMetrics
    session: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.api.url + path) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def get_json(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.api.url + path) as response:
            return response.status, await response.json()


def accounts() -> dict[str, Any]:
    return {"accounts": [{"account_id": "acct-a", "status": "connected", "lease_epoch": 3}]}


async def serve(status: StatusProvider = accounts, timeout_s: float = 2.0) -> Served:
    metrics = ConnectorMetrics()
    readiness = Readiness(timeout_s=timeout_s)
    api = HttpApi("127.0.0.1", 0, registry=metrics.registry, readiness=readiness, status=status)
    await api.start()
    return Served(api, readiness, metrics, aiohttp.ClientSession())


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = await serve()
    yield s
    await s.session.close()
    await s.api.stop()


@pytest.fixture
async def make_served() -> AsyncIterator[Callable[..., Any]]:
    started: list[Served] = []

    async def make(**kwargs: Any) -> Served:
        s = await serve(**kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        await s.session.close()
        await s.api.stop()


async def test_healthz_answers_while_the_process_lives(served: Served) -> None:
    assert served.api.port != 0
    status, _, body = await served.get("/healthz")
    assert (status, body) == (200, "ok\n")


async def test_readyz_with_no_checks_is_ready(served: Served) -> None:
    assert await served.get_json("/readyz") == (200, {"ready": True, "failing": [], "checks": {}})


async def test_readyz_passes_when_every_check_passes(served: Served) -> None:
    async def firestore() -> CheckResult:
        await asyncio.sleep(0)
        return True, "read in 3 ms"

    served.readiness.register("firestore", firestore)
    served.readiness.register("listener", lambda: (True, "last event 2 s ago"))
    status, body = await served.get_json("/readyz")
    assert status == 200
    assert body["checks"] == {
        "firestore": {"ok": True, "detail": "read in 3 ms"},
        "listener": {"ok": True, "detail": "last event 2 s ago"},
    }


async def test_readyz_is_503_and_names_the_failing_checks(served: Served) -> None:
    def broken() -> CheckResult:
        raise ConnectionError("firestore unreachable\nsecond line")

    served.readiness.register("firestore", broken)
    served.readiness.register("leases", lambda: (False, "2 leases late"))
    served.readiness.register("listener", lambda: (True, "fine"))
    served.readiness.register("odd", lambda: "yes")  # type: ignore[arg-type, return-value]
    status, body = await served.get_json("/readyz")
    assert status == 503
    assert body["ready"] is False
    assert body["failing"] == ["firestore", "leases", "odd"]
    assert body["checks"]["firestore"] == {"ok": False, "detail": "ConnectionError: firestore unreachable"}
    assert body["checks"]["leases"]["detail"] == "2 leases late"
    assert body["checks"]["odd"]["detail"] == "the check did not return (ok, detail)"
    assert body["checks"]["listener"]["ok"] is True


async def test_a_check_that_never_answers_fails_at_its_timeout(make_served: Callable[..., Any]) -> None:
    served: Served = await make_served(timeout_s=0.05)

    async def hangs() -> CheckResult:
        await asyncio.Event().wait()
        return True, "never"

    served.readiness.register("hangs", hangs)
    status, body = await served.get_json("/readyz")
    assert status == 503
    assert body["checks"]["hangs"] == {"ok": False, "detail": "no answer within 0.05 s"}


async def test_a_recovered_check_makes_the_connector_ready_again(served: Served) -> None:
    state = {"ok": False}
    served.readiness.register("leases", lambda: (state["ok"], "renewing" if state["ok"] else "late"))
    assert (await served.get_json("/readyz"))[0] == 503
    state["ok"] = True
    assert (await served.get_json("/readyz"))[0] == 200
    served.readiness.unregister("leases")
    assert (await served.get_json("/readyz"))[1]["checks"] == {}


def test_a_check_name_registers_once() -> None:
    readiness = Readiness()
    readiness.register("firestore", lambda: (True, ""))
    with pytest.raises(HttpApiError, match="'firestore' is already registered"):
        readiness.register("firestore", lambda: (True, ""))


async def test_metrics_are_prometheus_text_of_the_registry(served: Served) -> None:
    served.metrics.outbox_depth.set(7)
    served.metrics.events_published.labels(type="connected").inc(3)
    served.metrics.set_account_counts({"connected": 2, "needs_qr": 1})
    status, content_type, body = await served.get("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# HELP wa_keeper_outbox_depth Events stored in the outbox" in body
    assert "wa_keeper_outbox_depth 7.0" in body
    assert 'wa_keeper_events_published_total{type="connected"} 3.0' in body
    assert 'wa_keeper_accounts{status="connected"} 2.0' in body
    assert 'wa_keeper_accounts{status="banned"} 0.0' in body


async def test_status_is_the_providers_json(served: Served) -> None:
    assert await served.get_json("/status") == (200, accounts())


async def test_an_async_status_provider_works(make_served: Callable[..., Any]) -> None:
    async def provider() -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"accounts": []}

    served: Served = await make_served(status=provider)
    assert await served.get_json("/status") == (200, {"accounts": []})


@pytest.mark.parametrize(
    ("provider", "error"),
    [
        (lambda: 1 / 0, "ZeroDivisionError: division by zero"),
        (lambda: {"when": object()}, "TypeError: Object of type object is not JSON serializable"),
    ],
)
async def test_a_failing_status_provider_is_a_500_with_one_line(
    make_served: Callable[..., Any], provider: StatusProvider, error: str
) -> None:
    served: Served = await make_served(status=provider)
    assert await served.get_json("/status") == (500, {"error": error})
    assert (await served.get("/healthz"))[0] == 200, "the server keeps serving"


async def test_unknown_paths_and_methods_are_refused(served: Served) -> None:
    assert (await served.get("/nope"))[0] == 404
    async with served.session.post(served.api.url + "/healthz") as response:
        assert response.status == 405


async def test_a_busy_port_is_a_clear_error(served: Served) -> None:
    other = HttpApi(
        "127.0.0.1", served.api.port, registry=served.metrics.registry, readiness=Readiness(), status=accounts
    )
    with pytest.raises(
        HttpApiError, match=rf"cannot listen on 127.0.0.1:{served.api.port} \(WA_KEEPER_HTTP_PORT\)"
    ):
        await other.start()
    assert (await served.get("/healthz"))[0] == 200


async def test_settings_bind_loopback_by_default() -> None:
    settings = load_settings(env={"WA_KEEPER_HTTP_PORT": "0"}, dotenv=None)
    metrics = ConnectorMetrics()
    api = HttpApi.from_settings(settings, registry=metrics.registry, readiness=Readiness(), status=accounts)
    await api.start()
    try:
        assert api.host == "127.0.0.1"
        async with aiohttp.ClientSession() as session, session.get(api.url + "/healthz") as response:
            assert response.status == 200
    finally:
        await api.stop()
