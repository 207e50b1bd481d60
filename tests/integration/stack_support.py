"""Real processes for end-to-end tests: sim-server and `wa-keeper run` connectors.

Everything runs as it would in production (subprocesses, loopback sockets, the
emulators `make test` started); tests wait for conditions with deadlines.
Each stack publishes to a topic of its own unless told to use the real one, so
the functions emulator's policy reacts only where a test wants it to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from google.cloud import firestore

from connector.clock import SystemClock
from connector.control_client import activate_account, issue_command
from tests import emulator
from tests.pubsub_pull import PullSubscription, closed_port, unique_topic
from wa_wire import Collections, CommandAction

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
BACKUP_KEY = base64.b64encode(b"e2e-test-key-encryption-key-32b!").decode()


def wait_until(what: str, probe: Callable[[], T | None], deadline_s: float, every_s: float = 0.1) -> T:
    """Call `probe` until it returns something truthy; AssertionError naming `what` at the deadline."""
    end = time.monotonic() + deadline_s
    last: T | None = None
    while time.monotonic() < end:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {deadline_s} s (last: {last!r})")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, within_s: float = 20.0) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(within_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def spawn(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    handle = log.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "connector", *args], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
    )
    return Proc(name, popen, log)


@dataclass
class Stack:
    tmp: Path
    topic: str
    client: firestore.Client
    sim_url: str = ""
    sim: Proc | None = None
    connectors: dict[str, tuple[Proc, int]] = field(default_factory=dict)

    # ---- processes

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GOOGLE_CLOUD_PROJECT=emulator.project_id(),
            WA_KEEPER_TOPIC=self.topic,
            WA_KEEPER_TRANSPORT="sim",
            WA_KEEPER_SIM_URL=self.sim_url,
            WA_KEEPER_BACKUP_KEY=BACKUP_KEY,
            WA_KEEPER_BACKUP_INTERVAL_S="1",
            WA_KEEPER_HEALTH_INTERVAL_S="1",
            PYTHONPATH=str(ROOT),
        )
        env.pop("WA_KEEPER_BACKUP_KEY_FILE", None)
        return env

    def start_sim(self, *extra: str) -> None:
        port = closed_port()
        self.sim_url = f"http://127.0.0.1:{port}"
        args = ["sim-server", "--port", str(port), "--keepalive-ms", "300", "--churn-ms", "200", *extra]
        self.sim = spawn("sim", args, self.base_env(), self.tmp / "sim.log")
        wait_until("sim-server up", self._sim_health, 20)

    def _sim_health(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.sim_url}/api/health", timeout=2).ok
        return False

    def sessions_path(self, connector_id: str) -> Path:
        return self.tmp / f"sessions-{connector_id}"

    def start_connector(self, connector_id: str, **env: str) -> Proc:
        port = closed_port()
        full = self.base_env()
        full.update(
            WA_KEEPER_CONNECTOR_ID=connector_id,
            SESSIONS_PATH=str(self.sessions_path(connector_id)),
            WA_KEEPER_HTTP_PORT=str(port),
        )
        full.update(env)
        log = self.tmp / f"{connector_id}-{len(list(self.tmp.glob(connector_id + '-*.log')))}.log"
        proc = spawn(connector_id, ["run"], full, log)
        self.connectors[connector_id] = (proc, port)
        wait_until(f"{connector_id} serving /status", lambda: self.http_status(connector_id), 30)
        return proc

    def http_status(self, connector_id: str) -> dict[str, Any] | None:
        proc, port = self.connectors[connector_id]
        if not proc.alive():
            raise AssertionError(f"{connector_id} exited:\n{proc.tail()}")
        with contextlib.suppress(requests.RequestException, ValueError):
            data: dict[str, Any] = requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json()
            return data
        return None

    def log_tails(self, lines: int = 60) -> str:
        """The end of every connector's log (pytest shows it when a test fails)."""
        return "\n".join(
            f"--- {name}: {proc.log}\n{proc.tail(lines)}" for name, (proc, _) in self.connectors.items()
        )

    def close(self) -> None:
        for proc, _port in self.connectors.values():
            proc.stop()
        if self.sim is not None:
            self.sim.stop()

    # ---- sim-server API

    def sim_api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = requests.request(method, self.sim_url + path, json=body, timeout=10)
        return response.status_code, response.json()

    def fault(self, account: str, deadline_s: float = 30, **fault: Any) -> None:
        """Inject a fault; one that needs a live connection waits for it (409 until then).

        A document that says `connected` can be a moment ahead of the sim's view
        after a reconnect, so a 409 "no live connection" is tried again.
        """

        def injected() -> bool:
            status, body = self.sim_api("POST", f"/api/accounts/{account}/faults", fault)
            if status == 409:
                return False
            assert status == 200, body
            return True

        wait_until(f"fault {fault} injected into {account}", injected, deadline_s, every_s=0.2)

    def connections(self, account: str) -> list[dict[str, Any]]:
        _status, body = self.sim_api("GET", f"/api/connections?account={account}")
        result: list[dict[str, Any]] = body["connections"]
        return result

    # ---- Firestore

    def account(self, account: str) -> dict[str, Any]:
        return self.client.collection(Collections.ACCOUNTS).document(account).get().to_dict() or {}

    def wait_status(self, account: str, status: str, deadline_s: float = 60) -> dict[str, Any]:
        return emulator.wait_for_document(
            self.client, f"{Collections.ACCOUNTS}/{account}", lambda d: d.get("status") == status, deadline_s
        )

    def command(self, account: str, action: CommandAction, **params: Any) -> str:
        return issue_command(self.client, SystemClock(), account, action, params=params, issued_by="cli:test")

    def pair(self, account: str, deadline_s: float = 60) -> str:
        """Activate, order pairing, scan the QR at the sim-server, wait until connected; the jid."""
        activate_account(self.client, account)
        self.command(account, CommandAction.PAIR)

        def scanned() -> dict[str, Any] | None:
            _s, pending = self.sim_api("GET", "/api/qr")
            if not any(p["account"] == account for p in pending["pending"]):
                return None
            status, body = self.sim_api("POST", "/api/scan", {"account": account})
            return body if status == 200 else None

        wait_until(f"a QR code for {account}", scanned, deadline_s)
        doc = self.wait_status(account, "connected", deadline_s)
        return str(doc["jid"])


@contextlib.contextmanager
def stack(tmp: Path, client: firestore.Client, topic: str | None = None) -> Iterator[Stack]:
    the_stack = Stack(tmp=tmp, topic=topic or unique_topic("e2e"), client=client)
    try:
        the_stack.start_sim()
        yield the_stack
    finally:
        the_stack.close()


class EventLog:
    """Every event pulled so far from a test's own subscription."""

    def __init__(self, subscription: PullSubscription) -> None:
        self.subscription = subscription
        self.events: list[dict[str, Any]] = []

    def pull(self) -> None:
        with contextlib.suppress(TimeoutError):
            for message in self.subscription.pull_until(1, 2):
                self.events.append(json.loads(message.data))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def wait_for(self, kind: str, accounts: set[str], deadline_s: float) -> list[dict[str, Any]]:
        def seen() -> bool:
            self.pull()
            return accounts <= {e["account_id"] for e in self.of(kind)}

        wait_until(f"{kind} events of {sorted(accounts)}", seen, deadline_s, every_s=0)
        return self.of(kind)
