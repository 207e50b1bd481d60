"""Where the demo finds its emulators: the environment, a firebase.json, and the functions emulator's API.

The functions emulator's HTTP API (hub `/emulators`, `/backends`, trigger
routes) is played by a small aiohttp server on loopback, shaped like the
answers firebase-tools 15 gives (checked against a running emulator).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connector.demo import emulators as emu
from connector.demo import processes

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_names_the_emulators_or_nothing() -> None:
    assert emu.from_environment({}) is None
    hosts = emu.from_environment(
        {
            "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8180",
            "PUBSUB_EMULATOR_HOST": "127.0.0.1:8185",
            "FIREBASE_EMULATOR_HUB": "127.0.0.1:4410",
            "GOOGLE_CLOUD_PROJECT": "demo-x",
        }
    )
    assert hosts == emu.EmulatorHosts("127.0.0.1:8180", "127.0.0.1:8185", "127.0.0.1:4410", "demo-x")
    assert hosts.env()["FIREBASE_EMULATOR_HUB"] == "127.0.0.1:4410"
    default = emu.from_environment({"FIRESTORE_EMULATOR_HOST": "h:1", "PUBSUB_EMULATOR_HOST": "h:2"})
    assert (
        default is not None
        and default.project == emu.DEFAULT_PROJECT
        and "FIREBASE_EMULATOR_HUB" not in default.env()
    )


def test_firestore_without_pubsub_is_a_clear_error() -> None:
    with pytest.raises(emu.DemoError, match="PUBSUB_EMULATOR_HOST is not"):
        emu.from_environment({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8180"})


def test_the_project_config_gives_every_port_the_demo_needs() -> None:
    hosts = emu.from_config(ROOT / "firebase.json", "demo-wa-keeper")
    config = json.loads((ROOT / "firebase.json").read_text())["emulators"]
    assert hosts.firestore == f"127.0.0.1:{config['firestore']['port']}"
    assert hosts.pubsub == f"127.0.0.1:{config['pubsub']['port']}"
    assert hosts.hub == f"127.0.0.1:{config['hub']['port']}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the emulator config"),
        ("{not json", "not valid JSON"),
        ("[]", "no 'emulators' section"),
        (
            '{"emulators": {"firestore": {"port": 1}, "pubsub": {"port": 2}}}',
            "emulators.functions.port is missing",
        ),
        ('{"emulators": {"firestore": {"port": "x"}}}', "emulators.firestore.port is missing"),
    ],
)
def test_a_bad_config_is_one_clear_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "firebase.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(emu.DemoError, match=message):
        emu.from_config(path, "demo-x")


async def test_wait_ready_returns_once_the_suite_says_so(tmp_path: Path) -> None:
    code = f"print('...'); print({emu.READY_LINE!r}, flush=True); import time; time.sleep(30)"
    child = processes.spawn("suite", [sys.executable, "-c", code], {}, tmp_path / "ok.log", tmp_path)
    try:
        await emu.wait_ready(child, 30)
    finally:
        processes.stop(child)


async def test_a_suite_that_dies_at_start_is_reported_with_its_last_lines(tmp_path: Path) -> None:
    code = "print('Error: could not start the Firestore emulator'); raise SystemExit(1)"
    child = processes.spawn("suite", [sys.executable, "-c", code], {}, tmp_path / "bad.log", tmp_path)
    with pytest.raises(emu.DemoError, match="could not start the Firestore emulator"):
        await emu.wait_ready(child, 30)


class FakeFunctionsEmulator:
    """The hub and functions emulator routes the Scheduler uses; records trigger calls."""

    def __init__(self, generation: int = 0, scheduled: bool = True, failures: int = 0) -> None:
        self.generation, self.scheduled, self.failures = generation, scheduled, failures
        self.calls: list[str] = []
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/emulators", self.emulators)
        app.router.add_get("/backends", self.backends)
        app.router.add_post("/demo-x/{region}/{name}", self.trigger)
        return app

    async def emulators(self, _request: web.Request) -> web.Response:
        return web.json_response({"functions": {"name": "functions", "host": "127.0.0.1", "port": self.port}})

    async def backends(self, _request: web.Request) -> web.Response:
        trigger: dict[str, Any] = {"name": "sweep", "id": "us-central1-sweep", "region": "us-central1"}
        if self.scheduled:
            trigger["schedule"] = {"schedule": "every 5 minutes"}
        return web.json_response({"backends": [{"functionTriggers": [trigger]}]})

    async def trigger(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        key = f"{request.match_info['region']}-{name}"
        if key != f"us-central1-sweep-{self.generation}":
            listing = f"us-central1-on_lifecycle_event-{self.generation}, us-central1-sweep-{self.generation}"
            return web.Response(
                status=404, text=f"Function {key} does not exist, valid functions are: {listing}"
            )
        self.calls.append(name)
        if self.failures:
            self.failures -= 1
            return web.Response(status=500, text="Error: socket hang up")
        return web.Response(text="")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def serve(fake: FakeFunctionsEmulator) -> web.AppRunner:
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = int(runner.addresses[0][1])
    return runner


@pytest.mark.parametrize("generation", [0, 3])
async def test_the_scheduler_finds_the_sweep_trigger_and_runs_it(
    http: aiohttp.ClientSession, generation: int
) -> None:
    fake = FakeFunctionsEmulator(generation)
    runner = await serve(fake)
    try:
        scheduler = emu.Scheduler(f"127.0.0.1:{fake.port}", "demo-x", http)
        await scheduler.run_sweep()
        await scheduler.run_sweep()
    finally:
        await runner.cleanup()
    assert fake.calls == [f"sweep-{generation}"] * 2
    assert scheduler.runs == 2


async def test_no_scheduled_function_is_a_clear_error(http: aiohttp.ClientSession) -> None:
    fake = FakeFunctionsEmulator(scheduled=False)
    runner = await serve(fake)
    try:
        with pytest.raises(emu.DemoError, match="no scheduled function"):
            await emu.Scheduler(f"127.0.0.1:{fake.port}", "demo-x", http).locate()
    finally:
        await runner.cleanup()


async def test_no_hub_means_no_functions_emulator(http: aiohttp.ClientSession) -> None:
    with pytest.raises(emu.DemoError, match="FIREBASE_EMULATOR_HUB is not set"):
        await emu.Scheduler(None, "demo-x", http).locate()


async def test_an_unreachable_hub_is_a_clear_error(http: aiohttp.ClientSession) -> None:
    runner = await serve(FakeFunctionsEmulator())
    port = int(runner.addresses[0][1])
    await runner.cleanup()  # nothing listens there any more
    with pytest.raises(emu.DemoError, match="did not answer"):
        await emu.Scheduler(f"127.0.0.1:{port}", "demo-x", http).locate()


async def test_the_sweep_loop_says_when_it_fails_and_when_it_works_again(http: aiohttp.ClientSession) -> None:
    fake = FakeFunctionsEmulator(failures=2)
    runner = await serve(fake)
    said: list[str] = []
    recovered = asyncio.Event()

    def say(line: str) -> None:
        said.append(line)
        if "runs again" in line:
            recovered.set()

    scheduler = emu.Scheduler(f"127.0.0.1:{fake.port}", "demo-x", http)
    await scheduler.locate()
    loop = asyncio.create_task(scheduler.run_forever(0.01, say))
    try:
        await asyncio.wait_for(recovered.wait(), 30)
    finally:
        loop.cancel()
        await runner.cleanup()
    assert scheduler.runs >= 1
    assert said[0].startswith("the scheduled sweep failed") and "HTTP 500" in said[0]
    assert said[1] == "the scheduled sweep runs again"
    assert len(said) == 2  # one line per change, not one per failure
