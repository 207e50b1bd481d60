"""The worker protocol: newline-delimited JSON between the supervisor and a worker.

The supervisor writes orders to the worker's stdin; the worker writes reports
to its stdout (its stderr is for logs only). One message per line, UTF-8 JSON
object, at most `MAX_LINE_BYTES` bytes including the newline. Every message
carries `type` and `account` (one sim worker may serve many accounts; a
neonize worker serves one), and exactly the fields of its dataclass below.
Anything else is a `ProtocolError`; the reader drops that line and goes on.

Supervisor -> worker (orders):
  start(account, session_path, hold_ms)  open the session and connect (or ask to pair);
                                 hold_ms > 0 arms the hold (below), 0 leaves it off
  hold(account, for_ms)          keep the connection for for_ms more; with no later hold
                                 by then, close the socket and report `disconnected`.
                                 The supervisor sends one after each lease renewal, up to
                                 its renew deadline: a frozen or dead supervisor cannot keep
                                 a socket open past the point where it would self-fence.
  pair(account)                  start pairing (QR codes follow)
  logout(account)                log the device out on the server, then stop
  stop(account)                  disconnect and close the session cleanly

Worker -> supervisor (reports):
  loaded(jid)                    session opened; jid null = not paired yet
  qr(code, expires_at)           a QR code to show (a secret: never logged)
  paired(jid)                    pairing succeeded; the device row now exists
  connected                      the socket is up and logged in
  disconnected(reason, code)     the socket dropped; reason is human text, code the
                                 WhatsApp code when one is known (428, 500, 503...)
  logged_out(reason_code, on_connect)  the server says this device is logged out
  stream_replaced                another connection with this device took over
  stream_error(code)             a stream error (515 = restart required)
  temporary_ban(code, expires_at)
  client_outdated
  keepalive_timeout(count)       keepalives are failing
  keepalive_restored
  stopped                        the session is closed (answer to stop/logout)
  fatal(message)                 the worker cannot go on for this account
  rejected(order, reason)        an order that is valid JSON but not valid now (a second
                                 start, pair on a paired session...); nothing changed
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connector.errors import KeeperError
from wa_wire import WireError
from wa_wire.codec import decode, encode, validate_fields
from wa_wire.names import MAX_ID_LEN

MAX_LINE_BYTES = 16 * 1024
PROTOCOL_VERSION = 1

_ACCOUNT = {"max_len": MAX_ID_LEN, "min_len": 1}
_TIME = {"timestamp": True, "max_len": 40}


class ProtocolError(KeeperError):
    """A line that is not a valid protocol message; the message says why."""


@dataclass(frozen=True)
class Message:
    """Base of every protocol message; `TYPE` is the `type` field on the wire."""

    TYPE: ClassVar[str] = ""
    account: str = field(metadata=_ACCOUNT)

    def __post_init__(self) -> None:
        validate_fields(self)


# -- orders: supervisor -> worker ------------------------------------------------


MAX_HOLD_MS = 3_600_000


@dataclass(frozen=True)
class Start(Message):
    TYPE = "start"
    session_path: str = field(default="", metadata={"max_len": 4096, "min_len": 1})
    hold_ms: int = field(default=0, metadata={"min": 0, "max": MAX_HOLD_MS})


@dataclass(frozen=True)
class Hold(Message):
    TYPE = "hold"
    for_ms: int = field(default=1, metadata={"min": 1, "max": MAX_HOLD_MS})


@dataclass(frozen=True)
class Pair(Message):
    TYPE = "pair"


@dataclass(frozen=True)
class Logout(Message):
    TYPE = "logout"


@dataclass(frozen=True)
class Stop(Message):
    TYPE = "stop"


# -- reports: worker -> supervisor ----------------------------------------------


@dataclass(frozen=True)
class Loaded(Message):
    TYPE = "loaded"
    jid: str | None = field(default=None, metadata={"max_len": 256})


@dataclass(frozen=True)
class Qr(Message):
    TYPE = "qr"
    code: str = field(default="", metadata={"max_len": 4096, "min_len": 1})
    expires_at: str = field(default="", metadata=_TIME)


@dataclass(frozen=True)
class Paired(Message):
    TYPE = "paired"
    jid: str = field(default="", metadata={"max_len": 256, "min_len": 1})


@dataclass(frozen=True)
class Connected(Message):
    TYPE = "connected"


@dataclass(frozen=True)
class Disconnected(Message):
    TYPE = "disconnected"
    reason: str = ""
    code: int | None = None


@dataclass(frozen=True)
class LoggedOut(Message):
    TYPE = "logged_out"
    reason_code: int | None = None
    on_connect: bool = False


@dataclass(frozen=True)
class StreamReplaced(Message):
    TYPE = "stream_replaced"


@dataclass(frozen=True)
class StreamError(Message):
    TYPE = "stream_error"
    code: int | None = None


@dataclass(frozen=True)
class TemporaryBan(Message):
    TYPE = "temporary_ban"
    code: int | None = None
    expires_at: str | None = field(default=None, metadata=_TIME)


@dataclass(frozen=True)
class ClientOutdated(Message):
    TYPE = "client_outdated"


@dataclass(frozen=True)
class KeepaliveTimeout(Message):
    TYPE = "keepalive_timeout"
    count: int = field(default=1, metadata={"min": 0})


@dataclass(frozen=True)
class KeepaliveRestored(Message):
    TYPE = "keepalive_restored"


@dataclass(frozen=True)
class Stopped(Message):
    TYPE = "stopped"


@dataclass(frozen=True)
class Fatal(Message):
    TYPE = "fatal"
    message: str = ""


@dataclass(frozen=True)
class Rejected(Message):
    TYPE = "rejected"
    order: str = field(default="", metadata={"max_len": 40, "min_len": 1})
    reason: str = ""


ORDERS: dict[str, type[Message]] = {m.TYPE: m for m in (Start, Hold, Pair, Logout, Stop)}
REPORTS: dict[str, type[Message]] = {
    m.TYPE: m
    for m in (
        Loaded,
        Qr,
        Paired,
        Connected,
        Disconnected,
        LoggedOut,
        StreamReplaced,
        StreamError,
        TemporaryBan,
        ClientOutdated,
        KeepaliveTimeout,
        KeepaliveRestored,
        Stopped,
        Fatal,
        Rejected,
    )
}


def encode_line(message: Message) -> bytes:
    """One protocol line, newline included."""
    body: dict[str, Any] = {"type": message.TYPE, **encode(message)}
    line = (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"{message.TYPE} message is {len(line)} bytes, over {MAX_LINE_BYTES}")
    return line


def decode_line(line: bytes, allowed: dict[str, type[Message]]) -> Message:
    """Parse one line into an order or a report (`allowed` is ORDERS or REPORTS)."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(line)} bytes is over the {MAX_LINE_BYTES}-byte limit")
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("line is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError("line is not a JSON object")
    kind = data.pop("type", None)
    if not isinstance(kind, str) or kind not in allowed:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")
    try:
        return decode(allowed[kind], data)
    except WireError as exc:
        raise ProtocolError(f"{kind}: {exc}") from exc
