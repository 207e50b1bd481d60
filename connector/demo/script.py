"""The fault script as data, and the pure rules that judge it.

Each `Step` names a fault, who it hits and what should follow. `pick_targets`
says which accounts a step hits (a connector's accounts are those it holds at
that moment); `judge` reads one account's newest document and the events seen
since the fault and says whether it has recovered, needs a QR, or failed.
A status alone is not proof of a wipe (the policy may write one late, from
an event delivered late): `needs_qr` counts once the connector has said
`wiped` or `session_missing` since the fault.
The runner (connector/demo/runner.py) only acts and waits on these answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.demo.observe import AccountDoc, SeenEvent

CONNECTOR_A, CONNECTOR_B = "keeper-a", "keeper-b"
"""Connector ids; with these names rendezvous hashing spreads acct-01.. about evenly."""
MIN_ACCOUNTS = 3
"""Three account-level faults, each on an account of its own."""


class Fault(StrEnum):
    WIPE_DISK_AND_RESTART = "wipe_disk_and_restart"
    KILL_CONNECTOR = "kill_connector"
    TRANSIENT_LOGOUT = "transient_logout"
    REAL_LOGOUT = "real_logout"
    STREAM_REPLACED = "stream_replaced"


class Expect(StrEnum):
    NO_QR = "no_qr"  # back to connected as the same device, no QR code
    QR = "qr"  # wiped after the bounded retries: needs_qr, a QR is shown (then scanned)


@dataclass(frozen=True)
class Step:
    fault: Fault
    title: str
    story: str
    expect: Expect
    signature: str  # the event that shows the fault took effect; no recovery counts before it
    connector: str | None = None  # connector steps: whose accounts are hit

    @property
    def per_account(self) -> bool:
        return self.connector is None


SCRIPT: tuple[Step, ...] = (
    Step(
        Fault.WIPE_DISK_AND_RESTART,
        f"{CONNECTOR_A}: disk wiped, restarted",
        f"{CONNECTOR_A} dies (kill -9), its SESSIONS_PATH is deleted, it starts again. Its accounts"
        " must come back from the encrypted Firestore backups without a QR: on the restarted"
        f" {CONNECTOR_A}, or on {CONNECTOR_B} where a lease ran out first.",
        Expect.NO_QR,
        "lease_acquired",
        connector=CONNECTOR_A,
    ),
    Step(
        Fault.KILL_CONNECTOR,
        f"{CONNECTOR_B}: killed (SIGKILL)",
        f"{CONNECTOR_B} dies (kill -9) and stays down. Its leases expire and {CONNECTOR_A}"
        " takes over its accounts, restoring them from backups.",
        Expect.NO_QR,
        "lease_acquired",
        connector=CONNECTOR_B,
    ),
    Step(
        Fault.TRANSIENT_LOGOUT,
        "transient logout (401)",
        "WhatsApp sends a 401 but the device is still linked (a passing fault). The session"
        " deletes its device row, as whatsmeow does; the policy restores the last good backup.",
        Expect.NO_QR,
        "logged_out",
    ),
    Step(
        Fault.REAL_LOGOUT,
        "real logout (device unlinked)",
        "The device is unlinked on the phone: every login gets 401. The policy retries from"
        " backups up to its strike limit, then wipes: needs_qr, and the QR is shown.",
        Expect.QR,
        "logged_out",
    ),
    Step(
        Fault.STREAM_REPLACED,
        "stream_replaced (split brain)",
        "A stray copy of the session logs in elsewhere and kicks the holder (stream_replaced)."
        " The holder does not fight back: the policy backs off, then orders a reconnect"
        " (through the scheduled sweep), and the holder wins.",
        Expect.NO_QR,
        "stream_replaced",
    ),
)


def pick_targets(
    step: Step, docs: Mapping[str, AccountDoc], accounts: Sequence[str], used: set[str]
) -> list[str]:
    """The accounts a step hits: the connector's held accounts, or the first unused connected one."""
    if step.connector is not None:
        return [a for a in accounts if a in docs and docs[a].holder == step.connector]
    free = [a for a in accounts if a not in used]
    connected = [a for a in free if a in docs and docs[a].status == "connected"]
    chosen = connected or free
    return chosen[:1]


class Phase(StrEnum):
    WAITING = "waiting"
    RECOVERED = "recovered"
    NEEDS_QR = "needs_qr"
    QR_ASKED = "qr_asked"  # a QR code was shown for an account that should not need one
    OTHER_DEVICE = "other_device"


@dataclass(frozen=True)
class Baseline:
    """An account just before the fault (read fresh from Firestore): what "recovered" is compared with."""

    account: str
    jid: str | None
    last_connected_at: str | None
    since: float  # demo monotonic time of the fault
    signature: str = "connected"  # the event that must be seen before a recovery counts
    updated: datetime | None = None  # update time of the version read; older versions are history

    def is_newer(self, doc: AccountDoc) -> bool:
        return self.updated is None or doc.updated is None or doc.updated > self.updated


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    detail: str
    at: float | None = None  # monotonic time the deciding record arrived

    @property
    def final(self) -> bool:
        return self.phase is not Phase.WAITING


def how_recovered(events: Sequence[SeenEvent]) -> str:
    """One line saying how an account came back, from the events seen since the fault."""
    restored = [e for e in events if e.type == "restored"]
    logged_out = sum(1 for e in events if e.type == "logged_out")
    parts = []
    if logged_out:
        parts.append(f"{logged_out} logout{'s' if logged_out > 1 else ''}")
    if restored:
        last = restored[-1]
        parts.append(f"restored gen {last.generation} on {last.connector}")
    elif any(e.type == "connected" for e in events):
        parts.append("reconnected")
    return ", ".join(parts) or "reconnected"


def judge(base: Baseline, doc: AccountDoc | None, events: Sequence[SeenEvent]) -> Verdict:
    """Where one account stands after a fault (events: this account's, seen since the fault)."""
    pairing = [e for e in events if e.type == "pairing"]
    if pairing:
        return Verdict(Phase.QR_ASKED, "a QR code was asked for", pairing[0].seen_at)
    if doc is None:
        return Verdict(Phase.WAITING, "no account document yet")
    gone = [e for e in events if e.type in ("wiped", "session_missing")]
    if doc.status == "needs_qr" and gone:  # the connector found nothing to restore, or wiped it
        return Verdict(Phase.NEEDS_QR, doc.reason or "needs a QR code", max(doc.seen_at, gone[-1].seen_at))
    hit = any(e.type == base.signature for e in events)
    fresh = base.is_newer(doc) and doc.last_connected_at != base.last_connected_at
    if hit and fresh and doc.status == "connected":
        if base.jid is not None and doc.jid != base.jid:
            return Verdict(Phase.OTHER_DEVICE, f"connected as {doc.jid}, not {base.jid}", doc.seen_at)
        return Verdict(Phase.RECOVERED, how_recovered(events), doc.seen_at)
    return Verdict(Phase.WAITING, f"{doc.status}: {doc.reason}"[:120])


def repaired(base: Baseline, doc: AccountDoc | None) -> Verdict:
    """After a QR scan: connected again as a new device."""
    if doc is not None and doc.status == "connected" and doc.jid and doc.jid != base.jid:
        return Verdict(Phase.RECOVERED, f"paired again as {doc.jid}", doc.seen_at)
    return Verdict(Phase.WAITING, "waiting for the new device to connect")


def expected_phase(step: Step) -> Phase:
    return Phase.NEEDS_QR if step.expect is Expect.QR else Phase.RECOVERED
