"""The demo's running parts: sim-server and two connectors (child processes), and the calls it makes.

Processes are started in groups of their own and stopped by pid; sessions,
logs and the backup key live in one run folder. Connectors get the settings
a deployment would set, with shorter timings under `--fast`. The backup key
is made per run and handed over in a 0600 file, never on a command line or
in a log.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from google.cloud import firestore

from connector.clock import SystemClock
from connector.control_client import activate_account, issue_command
from connector.demo import processes
from connector.demo.emulators import DemoError
from connector.demo.observe import AccountDoc
from connector.demo.processes import Child
from wa_wire import DEFAULT_TOPIC, Collections, CommandAction

FAST_SETTINGS = {
    "WA_KEEPER_LEASE_TTL_S": "6",
    "WA_KEEPER_BACKUP_INTERVAL_S": "1",
    "WA_KEEPER_HEALTH_INTERVAL_S": "2",
}
LISTENING = re.compile(r"sim-server listening on (http://\S+)")


@dataclass(frozen=True)
class StackOptions:
    fast: bool
    start_within_s: float = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoStack:
    def __init__(self, root: Path, run_dir: Path, base_env: Mapping[str, str], options: StackOptions) -> None:
        self.root, self.run_dir, self.options = root, run_dir, options
        self.base_env = dict(base_env)
        self.sim_url = ""
        self.sim: Child | None = None
        self.connectors: dict[str, Child] = {}
        self.ports: dict[str, int] = {}
        self.children: list[Child] = []  # every child ever started, for the final stop
        self.key_file = run_dir / "backup.key"
        self._client: firestore.Client | None = None

    # ---- files and environment

    def prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(32)).decode())

    def sessions_path(self, connector_id: str) -> Path:
        return self.run_dir / f"sessions-{connector_id}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = dict(self.base_env)
        for name in ("WA_KEEPER_BACKUP_KEY", "WA_KEEPER_BACKUP_OLD_KEYS"):
            env.pop(name, None)
        env.update(
            WA_KEEPER_TRANSPORT="sim",
            WA_KEEPER_SIM_URL=self.sim_url,
            WA_KEEPER_BACKUP_KEY_FILE=str(self.key_file),
            WA_KEEPER_TOPIC=DEFAULT_TOPIC,
            WA_KEEPER_HTTP_HOST="127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        if self.options.fast:
            env.update(FAST_SETTINGS)
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> Child:
        log = self.run_dir / "logs" / f"{name}-{sum(c.name == name for c in self.children)}.log"
        child = processes.spawn(name, [sys.executable, "-m", "connector", *args], env, log, self.root)
        self.children.append(child)
        return child

    @property
    def client(self) -> firestore.Client:
        if self._client is None:
            self._client = firestore.Client(project=self.base_env["GOOGLE_CLOUD_PROJECT"])
        return self._client

    # ---- processes

    async def start_sim(self) -> None:
        self.sim = self._spawn("sim-server", ["sim-server", "--port", "0"], self._env())
        self.sim_url = await self._wait_for_line(self.sim)

    async def _wait_for_line(self, child: Child) -> str:
        deadline = asyncio.get_running_loop().time() + self.options.start_within_s
        while asyncio.get_running_loop().time() < deadline:
            found = LISTENING.search(child.log.read_text(errors="replace"))
            if found:
                return found.group(1)
            if not child.alive():
                raise DemoError(f"sim-server exited at start:\n{child.tail()}")
            await asyncio.sleep(0.1)
        raise DemoError(f"sim-server did not start within {self.options.start_within_s:.0f} s")

    async def start_connector(self, connector_id: str, http: aiohttp.ClientSession) -> Child:
        port = free_port()
        env = self._env(
            WA_KEEPER_CONNECTOR_ID=connector_id,
            SESSIONS_PATH=str(self.sessions_path(connector_id)),
            WA_KEEPER_HTTP_PORT=str(port),
        )
        child = self._spawn(connector_id, ["run"], env)
        self.connectors[connector_id], self.ports[connector_id] = child, port
        await self._wait_ready(child, f"http://127.0.0.1:{port}/readyz", http)
        return child

    async def _wait_ready(self, child: Child, url: str, http: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.start_within_s
        while loop.time() < deadline:
            if not child.alive():
                raise DemoError(f"{child.name} exited at start:\n{child.tail()}")
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise DemoError(f"{child.name} was not ready within {self.options.start_within_s:.0f} s")

    async def crash(self, connector_id: str) -> None:
        """kill -9 the connector; its workers die with it (PDEATHSIG): wait until they have."""
        child = self.connectors[connector_id]
        workers = await asyncio.to_thread(processes.kill_hard, child)
        left = await asyncio.to_thread(processes.wait_gone, workers, 15.0)
        if left:
            raise DemoError(f"{connector_id}'s workers outlived it (pids {sorted(left)})")

    def check_alive(self) -> None:
        """DemoError naming any child that died without being told to (with its exit code)."""
        for child in [self.sim, *self.connectors.values()]:
            if child is not None and not child.stopped and not child.alive():
                code = child.popen.returncode
                raise DemoError(f"{child.name} exited unexpectedly (exit code {code}):\n{child.tail()}")

    def wipe_sessions(self, connector_id: str) -> None:
        shutil.rmtree(self.sessions_path(connector_id), ignore_errors=True)

    def stop_all(self) -> None:
        """Connectors first (SIGTERM: final backups, leases released), then sim-server."""
        for child in self.children:
            if child is not self.sim:
                processes.request_stop(child)
        for child in self.children:
            if child is not self.sim:
                processes.stop(child)
        if self.sim is not None:
            processes.stop(self.sim)
        if self._client is not None:
            self._client.close()

    # ---- control plane and the simulated WhatsApp

    async def require_empty(self, accounts: list[str]) -> None:
        """Refuse a project where connectors would pick up other active accounts, or old ones of ours."""

        def existing() -> list[str]:
            docs = self.client.collection(Collections.ACCOUNTS).stream()
            return [d.id for d in docs if d.id in accounts or (d.to_dict() or {}).get("desired") == "active"]

        found = await asyncio.to_thread(existing)
        if found:
            raise DemoError(
                f"the emulator project already has {len(found)} of its accounts or other active ones"
                f" ({', '.join(sorted(found)[:3])}…): the demo needs an empty one (restart the emulators,"
                " or unset FIRESTORE_EMULATOR_HOST to let the demo start its own)"
            )

    def read_accounts(self, accounts: list[str], seen_at: float) -> dict[str, AccountDoc]:
        """Fresh reads of account documents (with their update times), not the listener's copies."""
        refs = [self.client.collection(Collections.ACCOUNTS).document(a) for a in accounts]
        return {
            snap.id: AccountDoc.of(snap.id, snap.to_dict() or {}, seen_at, snap.update_time)
            for snap in self.client.get_all(refs)
            if snap.exists
        }

    async def both_registered(self, connector_ids: tuple[str, ...], then_wait_s: float) -> None:
        """Wait for every connector's heartbeat, then one placement pass, so accounts spread at once."""
        wanted = set(connector_ids)

        def registered() -> set[str]:
            return {d.id for d in self.client.collection(Collections.CONNECTORS).stream()} & wanted

        deadline = asyncio.get_running_loop().time() + self.options.start_within_s
        while await asyncio.to_thread(registered) != wanted:
            if asyncio.get_running_loop().time() > deadline:
                raise DemoError(f"the connectors {sorted(wanted)} did not all register in time")
            await asyncio.sleep(0.2)
        await asyncio.sleep(then_wait_s)

    async def activate(self, account: str) -> None:
        await asyncio.to_thread(activate_account, self.client, account)

    async def command(self, account: str, action: CommandAction) -> str:
        return await asyncio.to_thread(
            issue_command, self.client, SystemClock(), account, action, issued_by="cli:demo"
        )

    async def sim_call(self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
        try:
            async with http.request(
                method, self.sim_url + path, json=body, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                data = await response.json(content_type=None)
                if response.status >= 300:
                    raise DemoError(f"sim-server {method} {path}: {data.get('error', response.status)}")
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DemoError(f"sim-server {method} {path} failed: {type(exc).__name__}") from exc

    async def fault(self, http: aiohttp.ClientSession, account: str, **fault: Any) -> None:
        await self.sim_call(http, "POST", f"/api/accounts/{account}/faults", fault)

    async def pending_qr(self, http: aiohttp.ClientSession) -> set[str]:
        data = await self.sim_call(http, "GET", "/api/qr")
        return {p["account"] for p in data.get("pending", [])}

    async def scan(self, http: aiohttp.ClientSession, account: str) -> None:
        await self.sim_call(http, "POST", "/api/scan", {"account": account})

    async def live(self, http: aiohttp.ClientSession, accounts: list[str]) -> dict[str, bool]:
        """Whether each account has a logged-in connection at the simulated WhatsApp right now."""
        found = {}
        for account in accounts:
            data = await self.sim_call(http, "GET", f"/api/accounts/{account}")
            found[account] = bool(data.get("live"))
        return found

    async def devices(self, http: aiohttp.ClientSession) -> dict[str, str]:
        """The device each account has linked at the simulated WhatsApp (account -> jid)."""
        data = await self.sim_call(http, "GET", "/api/devices")
        return {d["account"]: d["jid"] for d in data.get("devices", [])}
