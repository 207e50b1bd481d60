"""neonize events -> worker protocol reports: a pure translation, no neonize import.

Events are neonize's protobuf messages (neonize.events.*Ev); they are told
apart by their protobuf type name, so this module (and the supervisor that may
import it) never loads neonize. neonize turns whatsmeow's integer codes into
enums (1 = generic 400 ... 10 = unavailable 503) and leaves the enum unset for a
code it does not know; `ConnectFailure` then still carries the raw code in its
`Raw` node's `reason` attribute, which is what we report.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from connector.workers import protocol as wp
from wa_wire.codec import utc_timestamp
from wa_wire.names import MAX_TEXT_LEN

CONNECT_FAILURE_CODES = {1: 400, 2: 401, 3: 402, 4: 403, 5: 406, 6: 405, 7: 409, 8: 500, 9: 501, 10: 503}
"""neonize's ConnectFailureReason enum -> WhatsApp's code (whatsmeow events.ConnectFailure*)."""

TEMP_BAN_CODES = {1: 101, 2: 102, 3: 103, 4: 104, 5: 106}
"""neonize's TemporaryBan.TempBanReason enum -> whatsmeow's TempBanReason code."""

LOGGED_OUT_CODES = frozenset({401, 403, 406})
"""Codes whatsmeow treats as a logout (ConnectFailureReason.IsLoggedOut)."""

FIRST_QR_TTL_S = 60
NEXT_QR_TTL_S = 20
"""whatsmeow's QR channel shows the first code for 60 s and each later one for 20 s."""


def translate(account: str, event: Any, now: datetime) -> wp.Message | None:
    """The report for one neonize lifecycle event, or None when it needs none."""
    kind = event.DESCRIPTOR.name
    if kind in _SIMPLE:
        return _SIMPLE[kind](account=account)
    if kind == "Disconnected":
        return wp.Disconnected(account=account, reason="connection closed")
    if kind == "LoggedOut":
        code = CONNECT_FAILURE_CODES.get(event.Reason) if event.HasField("Reason") else None
        return wp.LoggedOut(account=account, reason_code=code, on_connect=bool(event.OnConnect))
    if kind == "ConnectFailure":
        return _connect_failure(account, event, now)
    if kind == "TemporaryBan":
        code = TEMP_BAN_CODES.get(event.Code) if event.HasField("Code") else None
        return wp.TemporaryBan(account=account, code=code, expires_at=_expiry(event, now))
    if kind == "StreamError":
        return wp.StreamError(account=account, code=_stream_error_code(event))
    if kind == "KeepAliveTimeout":
        return wp.KeepaliveTimeout(account=account, count=max(0, int(event.ErrorCount)))
    if kind == "PairStatus":
        if event.Status == 2:  # PairStatus.SUCCESS
            return wp.Paired(account=account, jid=format_jid(event.ID))
        return wp.Disconnected(account=account, reason=_text(f"pairing failed: {event.Error}"))
    if kind == "QR":
        return None  # codes arrive one at a time, with their lifetime, through the qr callback
    return None


_SIMPLE: dict[str, type[wp.Message]] = {
    "Connected": wp.Connected,
    "StreamReplaced": wp.StreamReplaced,
    "ClientOutdated": wp.ClientOutdated,
    "KeepAliveRestored": wp.KeepaliveRestored,
}

LIFECYCLE_EVENTS = (
    "QR",
    "PairStatus",
    "Connected",
    "Disconnected",
    "LoggedOut",
    "StreamReplaced",
    "TemporaryBan",
    "ConnectFailure",
    "ClientOutdated",
    "StreamError",
    "KeepAliveTimeout",
    "KeepAliveRestored",
)
"""The protobuf names of every event the neonize worker registers a handler for."""


def _connect_failure(account: str, event: Any, now: datetime) -> wp.Message:
    code = CONNECT_FAILURE_CODES.get(event.Reason) if event.HasField("Reason") else None
    if code is None:
        code = _int_attr(event.Raw, "reason") if event.HasField("Raw") else None
    if code in LOGGED_OUT_CODES:
        return wp.LoggedOut(account=account, reason_code=code, on_connect=True)
    if code == 402:
        expire = _int_attr(event.Raw, "expire") if event.HasField("Raw") else None
        expires_at = utc_timestamp(now + timedelta(seconds=expire)) if expire else None
        return wp.TemporaryBan(account=account, code=_int_attr(event.Raw, "code"), expires_at=expires_at)
    if code == 405:
        return wp.ClientOutdated(account=account)
    reason = f"connect failure {code if code is not None else 'with no code'}"
    if event.Message:
        reason += f": {event.Message}"
    return wp.Disconnected(account=account, reason=_text(reason), code=code)


def _expiry(event: Any, now: datetime) -> str | None:
    if not event.HasField("Expire") or event.Expire <= 0:
        return None
    return utc_timestamp(now + timedelta(seconds=int(event.Expire)))


def _stream_error_code(event: Any) -> int | None:
    text = str(event.Code).strip()
    if text.isdigit():
        return int(text)
    return _int_attr(event.Raw, "code") if event.HasField("Raw") else None


def _int_attr(node: Any, name: str) -> int | None:
    """An integer attribute of a whatsmeow node (sent as text or as an integer)."""
    for attr in node.Attrs:
        if attr.name != name:
            continue
        which = attr.WhichOneof("Value")
        if which == "integer":
            return int(attr.integer)
        if which == "text" and attr.text.strip().lstrip("-").isdigit():
            return int(attr.text.strip())
    return None


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT_LEN else value[: MAX_TEXT_LEN - 1] + "…"


def format_jid(jid: Any) -> str:
    """`user[:device]@server` from neonize's JID message."""
    user = str(jid.User)
    if jid.Device and ":" not in user:
        user = f"{user}:{jid.Device}"
    return f"{user}@{jid.Server}"


def qr_report(account: str, code: bytes | str, index: int, now: datetime) -> wp.Qr:
    """The `qr` report for the `index`-th code of a pairing (0 = the first)."""
    text = code.decode() if isinstance(code, bytes) else code
    ttl = FIRST_QR_TTL_S if index == 0 else NEXT_QR_TTL_S
    return wp.Qr(account=account, code=text, expires_at=utc_timestamp(now + timedelta(seconds=ttl)))


class SessionDatabaseError(Exception):
    """neonize could not open the session database (corrupt, not a database...)."""


def parse_device_list(raw: bytes) -> list[str]:
    """JIDs from neonize's `GetAllDevices` answer: `jid,push,business,init` records joined
    by `|\\x01|`, an empty answer for none, or `error: ...` when the database is unusable."""
    text = raw.decode(errors="replace").strip()
    if not text:
        return []
    if text.startswith("error:"):
        raise SessionDatabaseError(text.removeprefix("error:").strip())
    jids = []
    for record in text.split("|\x01|"):
        jid = record.split(",", 1)[0].strip()
        if "@" not in jid:
            raise SessionDatabaseError(f"unexpected device record from neonize: {record[:80]!r}")
        jids.append(jid)
    return jids
