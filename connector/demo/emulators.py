"""The Firebase emulator suite for the demo: reused when the environment names it, else started here.

Inside `make test` (firebase emulators:exec) FIRESTORE_EMULATOR_HOST,
PUBSUB_EMULATOR_HOST and FIREBASE_EMULATOR_HUB are set: the demo uses those
emulators and never stops them. Otherwise it runs `scripts/firebase
emulators:start` (firestore, pubsub, functions) as a child process group and
stops it by pid at the end. The functions emulator is found through the hub.

Cloud Scheduler is not emulated: `Scheduler` plays its part, asking the
functions emulator to run the scheduled `sweep` (found by its schedule in the
emulator's `/backends` listing).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from connector.demo.processes import Child, spawn
from connector.errors import KeeperError

READY_LINE = "All emulators ready"
WORKER_START_S = "120"
"""FUNCTIONS_DISCOVERY_TIMEOUT for the suite started here: the functions emulator gives a new
Python worker 30 s to start, then drops the event (it acks Pub/Sub messages whatever happened);
on a busy machine a cold start takes longer than that."""
EMULATORS = ("firestore", "pubsub", "functions")
DEFAULT_PROJECT = "demo-wa-keeper"


class DemoError(KeeperError):
    """The demo cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class EmulatorHosts:
    """Where the emulators listen (host:port) and the project they serve."""

    firestore: str
    pubsub: str
    hub: str | None
    project: str

    def env(self) -> dict[str, str]:
        """Variables every client of these emulators needs (this process and its children)."""
        env = {
            "FIRESTORE_EMULATOR_HOST": self.firestore,
            "PUBSUB_EMULATOR_HOST": self.pubsub,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }
        if self.hub:
            env["FIREBASE_EMULATOR_HUB"] = self.hub
        return env


def from_environment(env: Mapping[str, str]) -> EmulatorHosts | None:
    """The emulators named by the environment, or None when FIRESTORE_EMULATOR_HOST is unset."""
    firestore = env.get("FIRESTORE_EMULATOR_HOST")
    if not firestore:
        return None
    pubsub = env.get("PUBSUB_EMULATOR_HOST")
    if not pubsub:
        raise DemoError(
            "FIRESTORE_EMULATOR_HOST is set but PUBSUB_EMULATOR_HOST is not: set both, or neither"
        )
    project = env.get("GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT
    return EmulatorHosts(firestore, pubsub, env.get("FIREBASE_EMULATOR_HUB") or None, project)


def from_config(path: Path, project: str) -> EmulatorHosts:
    """The hosts a firebase.json would start the emulators on."""
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise DemoError(f"cannot read the emulator config {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise DemoError(f"the emulator config {path} is not valid JSON") from exc
    emulators = config.get("emulators") if isinstance(config, dict) else None
    if not isinstance(emulators, dict):
        raise DemoError(f"{path} has no 'emulators' section")

    def host(name: str) -> str:
        entry = emulators.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("port"), int):
            raise DemoError(f"{path}: emulators.{name}.port is missing (the demo needs {name})")
        return f"{entry.get('host', '127.0.0.1')}:{entry['port']}"

    for name in EMULATORS:
        host(name)
    return EmulatorHosts(host("firestore"), host("pubsub"), host("hub"), project)


def start_suite(root: Path, config: Path, project: str, env: Mapping[str, str], log: Path) -> Child:
    """Start `scripts/firebase emulators:start` for firestore, pubsub and functions."""
    script = root / "scripts" / "firebase"
    if not script.exists():
        raise DemoError(f"{script} not found: run the demo from a source checkout ('make demo')")
    if not (root / "functions" / "venv").is_dir():
        raise DemoError("functions/venv is missing: run 'make setup' (make demo does) first")
    argv = [str(script), "--config", str(config), "emulators:start"]
    argv += ["--only", ",".join(EMULATORS), "--project", project]
    return spawn("emulators", argv, {"FUNCTIONS_DISCOVERY_TIMEOUT": WORKER_START_S, **env}, log, cwd=root)


async def wait_ready(child: Child, within_s: float) -> None:
    """Wait until the suite prints that it is ready; DemoError with its last lines otherwise."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if READY_LINE in child.log.read_text(errors="replace"):
            return
        if not child.alive():
            raise DemoError(f"the emulator suite exited before it was ready:\n{child.tail()}")
        await asyncio.sleep(0.2)
    raise DemoError(f"the emulator suite was not ready within {within_s:.0f} s:\n{child.tail()}")


class Scheduler:
    """Cloud Scheduler's part: run the scheduled `sweep` function in the functions emulator."""

    def __init__(self, hub: str | None, project: str, http: aiohttp.ClientSession) -> None:
        self._hub, self._project, self._http = hub, project, http
        self._url: str | None = None
        self.runs = 0

    async def _functions_base(self) -> str:
        if not self._hub:
            raise DemoError(
                "FIREBASE_EMULATOR_HUB is not set: the demo needs the functions emulator (the policy)"
            )
        emulators = await self._get_json(f"http://{self._hub}/emulators")
        info = emulators.get("functions")
        if not isinstance(info, dict) or "port" not in info:
            raise DemoError("the emulator suite runs no functions emulator: the demo needs the policy")
        return f"http://{info.get('host', '127.0.0.1')}:{info['port']}"

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DemoError(f"emulator API {url} did not answer: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise DemoError(f"emulator API {url} answered something other than a JSON object")
        return data

    async def locate(self) -> str:
        """The URL that runs the scheduled function (the emulator keys triggers as `<id>-<generation>`)."""
        base = await self._functions_base()
        backends = (await self._get_json(f"{base}/backends")).get("backends", [])
        scheduled = [
            t
            for backend in backends
            for t in backend.get("functionTriggers", [])
            if isinstance(t, dict) and t.get("schedule")
        ]
        if not scheduled:
            raise DemoError("the functions emulator has no scheduled function (sweep) loaded")
        trigger = scheduled[0]
        probe = f"{base}/{self._project}/{trigger['region']}/{trigger['name']}"
        async with self._http.post(probe, json={}, timeout=aiohttp.ClientTimeout(total=60)) as response:
            text = await response.text()
        if response.status < 300:
            return probe
        keys = re.findall(rf"{re.escape(trigger['id'])}-(\d+)", text)
        if not keys:
            raise DemoError(f"cannot find the sweep trigger in the functions emulator: {text[:200]}")
        return f"{base}/{self._project}/{trigger['region']}/{trigger['name']}-{max(keys, key=int)}"

    async def run_sweep(self) -> None:
        """One scheduled run of the sweep; DemoError when it fails."""
        if self._url is None:
            self._url = await self.locate()
        try:
            async with self._http.post(
                self._url, json={}, timeout=aiohttp.ClientTimeout(total=60)
            ) as response:
                if response.status >= 300:
                    raise DemoError(f"the sweep failed with HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DemoError(f"the sweep could not be run: {type(exc).__name__}") from exc
        self.runs += 1

    async def run_forever(self, every_s: float, say: Callable[[str], None]) -> None:
        """Run the sweep every `every_s`; say so when it starts failing and when it works again."""
        failing = False
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.run_sweep()
            except DemoError as exc:
                if not failing:
                    say(f"the scheduled sweep failed (the demo goes on, and tries again): {exc}")
                failing = True
                continue
            if failing:
                say("the scheduled sweep runs again")
            failing = False
