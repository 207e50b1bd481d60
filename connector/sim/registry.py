"""The simulated WhatsApp's memory: accounts, linked devices, connection records.

No I/O and no clock of its own: callers pass `now`. `admit` is the login
decision (which frame refuses a device, or None to let it in), kept pure so a
table can test it. Like WhatsApp, the registry knows a device by its jid and
the fingerprint of its noise key, recorded at pairing; a backup of a still
linked device carries the same row and is let in, whatever its age.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from connector.sim import wire
from wa_wire.codec import utc_timestamp

PHONE_BASE = 15550000000
LOGOUT_CODE = 401


@dataclass
class Device:
    jid: str
    account: str
    noise_fp: str
    linked_at: str


@dataclass
class ConnectionRecord:
    """One interval during which a device was logged in from one place."""

    conn_id: str
    account: str
    jid: str
    label: str
    start: str
    end: str | None = None
    end_reason: str | None = None


@dataclass
class Account:
    account: str
    phone: str
    next_device: int = 1
    jid: str | None = None  # the device currently linked, if any
    ban_until: datetime | None = None
    ban_code: int = 101
    logout_next_connect: bool = False
    failures_next_connects: list[int] = field(default_factory=list)
    silenced: bool = False


class Registry:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.devices: dict[str, Device] = {}
        self.records: dict[str, list[ConnectionRecord]] = {}
        self._open: dict[str, ConnectionRecord] = {}

    def account(self, account: str) -> Account:
        """The account, created on first sight with the next free phone number."""
        if account not in self.accounts:
            phone = str(PHONE_BASE + len(self.accounts) + 1)
            self.accounts[account] = Account(account=account, phone=phone)
        return self.accounts[account]

    def link(self, account: str, noise_fp: str, now: datetime) -> tuple[Device, Device | None]:
        """Pair a new device for `account`; it replaces (unlinks) the one linked before."""
        record = self.account(account)
        replaced = self.devices.pop(record.jid, None) if record.jid else None
        jid = f"{record.phone}:{record.next_device}@s.whatsapp.net"
        record.next_device += 1
        device = Device(jid=jid, account=account, noise_fp=noise_fp, linked_at=utc_timestamp(now))
        self.devices[jid] = device
        record.jid = jid
        return device, replaced

    def unlink(self, account: str) -> Device | None:
        """Remove the account's linked device; every later login with it gets 401."""
        record = self.accounts.get(account)
        if record is None or record.jid is None:
            return None
        device = self.devices.pop(record.jid, None)
        record.jid = None
        return device

    def admit(self, hello: wire.Hello, now: datetime) -> wire.Frame | None:
        """None lets the device in; otherwise the frame that refuses it (then the socket closes)."""
        device = self.devices.get(hello.jid)
        if device is None or device.account != hello.account or device.noise_fp != hello.noise_fp:
            return wire.LoggedOutFrame(reason_code=LOGOUT_CODE, on_connect=True)  # unknown, unlinked, foreign
        record = self.account(hello.account)
        if record.logout_next_connect:
            record.logout_next_connect = False
            return wire.LoggedOutFrame(reason_code=LOGOUT_CODE, on_connect=True)
        if record.ban_until is not None and now < record.ban_until:
            return wire.TemporaryBanFrame(code=record.ban_code, expires_at=utc_timestamp(record.ban_until))
        if record.failures_next_connects:
            code = record.failures_next_connects.pop(0)
            if code == 405:
                return wire.ClientOutdatedFrame()
            return wire.ConnectFailureFrame(code=code, message=f"simulated server error {code}")
        return None

    def open_record(self, account: str, jid: str, label: str, now: datetime) -> ConnectionRecord:
        record = ConnectionRecord(
            conn_id=uuid.uuid4().hex, account=account, jid=jid, label=label, start=utc_timestamp(now)
        )
        self.records.setdefault(jid, []).append(record)
        self._open[record.conn_id] = record
        return record

    def close_record(self, conn_id: str, reason: str, now: datetime) -> None:
        record = self._open.pop(conn_id, None)
        if record is not None:
            record.end, record.end_reason = utc_timestamp(now), reason

    def connections(self, jid: str | None = None, account: str | None = None) -> list[ConnectionRecord]:
        """Connection records, oldest first, of one device, one account, or all."""
        if jid is not None:
            return list(self.records.get(jid, []))
        every = [r for records in self.records.values() for r in records]
        return sorted(
            (r for r in every if account is None or r.account == account), key=lambda r: (r.start, r.conn_id)
        )


def overlapping(records: list[ConnectionRecord]) -> list[tuple[ConnectionRecord, ConnectionRecord]]:
    """Pairs of intervals of the same device that were open at the same time (should be none)."""
    pairs = []
    by_jid: dict[str, list[ConnectionRecord]] = {}
    for record in records:
        by_jid.setdefault(record.jid, []).append(record)
    for group in by_jid.values():
        ordered = sorted(group, key=lambda r: r.start)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                if first.end is None or second.start < first.end:
                    pairs.append((first, second))
    return pairs
