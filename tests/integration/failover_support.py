"""Failover helpers shared by tests/integration/test_failover.py and bench/failover.py.

Many accounts over several connectors: pair them at once, read who holds what
(leases, account documents, each connector's /status), and the live sim-server
connections of each account (tests/integration/sim_records.py reads them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from connector.assignment import rank
from connector.control_client import activate_account
from tests.integration.sim_records import Connection
from tests.integration.stack_support import Stack, wait_until
from wa_wire import Collections, CommandAction


def preferring(connector: str, among: Sequence[str], count: int, prefix: str) -> list[str]:
    """`count` account ids whose rendezvous ranking puts `connector` first among `among`.

    With these, the other connectors stay standbys: placement never hands them an
    account while `connector` is alive.
    """
    found: list[str] = []
    n = 0
    while len(found) < count:
        account = f"{prefix}-{n:04d}"
        if rank(account, among)[0] == connector:
            found.append(account)
        n += 1
    return found


def records(stack: Stack, accounts: Iterable[str] | None = None) -> list[Connection]:
    _status, body = stack.sim_api("GET", "/api/connections")
    wanted = None if accounts is None else set(accounts)
    parsed = [Connection.parse(r) for r in body["connections"]]
    return [r for r in parsed if wanted is None or r.account in wanted]


def open_connections(stack: Stack, accounts: Iterable[str]) -> dict[str, list[Connection]]:
    """The live sim connections of each account."""
    live: dict[str, list[Connection]] = {account: [] for account in accounts}
    for record in records(stack, live):
        if record.end is None:
            live[record.account].append(record)
    return live


def pair_many(stack: Stack, accounts: Sequence[str], deadline_s: float) -> None:
    """Activate every account, order pairing, scan each QR as it appears, wait until all are connected."""
    for account in accounts:
        activate_account(stack.client, account)
        stack.command(account, CommandAction.PAIR)
    waiting = set(accounts)

    def scan() -> bool:
        _s, pending = stack.sim_api("GET", "/api/qr")
        for item in pending["pending"]:
            if item["account"] in waiting:
                code, _body = stack.sim_api("POST", "/api/scan", {"account": item["account"]})
                if code == 200:
                    waiting.discard(item["account"])
        return not waiting

    wait_until("every QR code scanned", scan, deadline_s, every_s=0.2)
    wait_until(
        "every account connected",
        lambda: set(statuses(stack.client, accounts).values()) == {"connected"},
        deadline_s,
        every_s=0.3,
    )


def statuses(client: firestore.Client, accounts: Iterable[str]) -> dict[str, str | None]:
    refs = [client.collection(Collections.ACCOUNTS).document(a) for a in accounts]
    return {snap.id: (snap.to_dict() or {}).get("status") for snap in client.get_all(refs)}


def accounts_docs(client: firestore.Client, accounts: Iterable[str]) -> dict[str, dict[str, Any]]:
    refs = [client.collection(Collections.ACCOUNTS).document(a) for a in accounts]
    return {snap.id: snap.to_dict() or {} for snap in client.get_all(refs)}


def leases(client: firestore.Client, accounts: Iterable[str]) -> dict[str, tuple[str | None, int]]:
    """Each account's lease holder and epoch, as stored (holder None: released or missing)."""
    refs = [client.collection(Collections.LEASES).document(a) for a in accounts]
    out: dict[str, tuple[str | None, int]] = {}
    for snap in client.get_all(refs):
        data = snap.to_dict() or {}
        out[snap.id] = (data.get("holder"), int(data.get("epoch", 0)))
    return out


def manifests(client: firestore.Client, account: str) -> list[dict[str, Any]]:
    """The account's backup manifests, oldest generation first."""
    backups = client.collection(Collections.ACCOUNTS).document(account).collection("backups")
    found = [d.to_dict() or {} for d in backups.stream()]
    return sorted(found, key=lambda m: int(m["generation"]))


def held_by(stack: Stack, connector: str) -> dict[str, dict[str, Any]]:
    """The accounts a connector's /status shows it holding."""
    status = stack.http_status(connector) or {}
    accounts: dict[str, dict[str, Any]] = status.get("accounts", {})
    return accounts


@dataclass(frozen=True)
class Check:
    """A probe's answer that says, when it is no, what was still missing (wait_until prints it)."""

    ok: bool
    why: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return "ok" if self.ok else self.why


def connected_once(stack: Stack, connector: str, accounts: Sequence[str]) -> Check:
    """`connector` holds every account, each is `connected` in its /status and Firestore, once at sim."""
    held = held_by(stack, connector)
    views = {a: held.get(a, {}).get("status") for a in accounts}
    if any(status != "connected" for status in views.values()):
        return Check(False, f"{connector}'s /status: {views}")
    stored = statuses(stack.client, accounts)
    if set(stored.values()) != {"connected"}:
        return Check(False, f"Firestore statuses: {stored}; leases: {leases(stack.client, accounts)}")
    live = open_connections(stack, accounts)
    if any(len(found) != 1 for found in live.values()):
        return Check(False, f"live sim connections: {live}")
    return Check(True)


def registered(stack: Stack, connectors: Iterable[str]) -> bool:
    """Every one of `connectors` has a heartbeat in `connectors/` (placement sees them all)."""
    refs = [stack.client.collection(Collections.CONNECTORS).document(c) for c in connectors]
    return all(snap.exists for snap in stack.client.get_all(refs))


@dataclass(frozen=True)
class Seen:
    """One version of an account document as a listener saw it."""

    at: float  # time.monotonic() on arrival
    account: str
    status: str | None
    holder: str | None


class AccountWatch:
    """Every version of the watched account documents, in arrival order (one collection listener)."""

    def __init__(self, client: firestore.Client, accounts: Iterable[str]) -> None:
        self._accounts = set(accounts)
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._watch = client.collection(Collections.ACCOUNTS).on_snapshot(self._on_change)

    def _on_change(self, _docs: Any, changes: Any, _read_time: Any) -> None:
        now = time.monotonic()
        with self._lock:
            for change in changes:
                doc = change.document
                if doc.id in self._accounts and doc.exists:
                    data = doc.to_dict() or {}
                    self.seen.append(Seen(now, doc.id, data.get("status"), data.get("holder")))

    def history(self, account: str, since: float = 0.0) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.account == account and s.at >= since]

    def close(self) -> None:
        self._watch.unsubscribe()


def connected_once_anywhere(stack: Stack, accounts: Sequence[str]) -> bool:
    """Every account `connected` in Firestore, at its holder's /status, and once at sim-server."""
    docs = accounts_docs(stack.client, accounts)
    if {doc.get("status") for doc in docs.values()} != {"connected"}:
        return False
    views = {c: held_by(stack, c) for c, (proc, _port) in stack.connectors.items() if proc.alive()}
    for account, doc in docs.items():
        if views.get(str(doc.get("holder")), {}).get(account, {}).get("status") != "connected":
            return False
    return all(len(live) == 1 for live in open_connections(stack, accounts).values())
