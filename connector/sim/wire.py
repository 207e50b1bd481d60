"""Messages on the sim-server's websocket (`/ws`), between a sim worker and the server.

JSON text frames, `{"op": ..., fields}`, each exactly one dataclass below
(checked with the wire contract's codec: missing, extra or ill-typed fields
are errors). A session never sends its keys: only `noise_fp`, a fingerprint
of the noise key in its `whatsmeow_device` row, which the server compares with
the one it recorded at pairing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wa_wire import WireError
from wa_wire.codec import decode, encode, validate_fields
from wa_wire.names import MAX_ID_LEN

MAX_FRAME_BYTES = 16 * 1024
DROP_CLOSE_CODE = 4428
"""Websocket close code for an injected connection drop (WhatsApp's 428)."""
PROTOCOL_CLOSE_CODE = 4400

_ACCOUNT = {"max_len": MAX_ID_LEN, "min_len": 1}
_FP = {"max_len": 64, "min_len": 16}
_TIME = {"timestamp": True, "max_len": 40}


class SimWireError(ValueError):
    """A frame that is not one of the messages below."""


def fingerprint(noise_key: bytes) -> str:
    """What the server may know of a session's noise key: a hash, never the key."""
    return hashlib.sha256(b"wa-keeper sim noise\x00" + noise_key).hexdigest()[:32]


@dataclass(frozen=True)
class Frame:
    OP: ClassVar[str] = ""

    def __post_init__(self) -> None:
        validate_fields(self)


# -- worker -> server --------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Frame):
    """Log in with the device in the session file."""

    OP = "hello"
    account: str = field(default="", metadata=_ACCOUNT)
    jid: str = field(default="", metadata={"max_len": 256, "min_len": 1})
    noise_fp: str = field(default="", metadata=_FP)
    label: str = field(default="", metadata={"max_len": 200})


@dataclass(frozen=True)
class PairRequest(Frame):
    """No device yet: ask for QR codes; `noise_fp` is the key the new device will use."""

    OP = "pair"
    account: str = field(default="", metadata=_ACCOUNT)
    noise_fp: str = field(default="", metadata=_FP)
    label: str = field(default="", metadata={"max_len": 200})


@dataclass(frozen=True)
class Ping(Frame):
    OP = "ping"
    seq: int = field(default=0, metadata={"min": 0})


@dataclass(frozen=True)
class LogoutRequest(Frame):
    """Unlink this device (whatsmeow's Logout: remove-companion-device)."""

    OP = "logout"


# -- server -> worker --------------------------------------------------------------


@dataclass(frozen=True)
class QrCode(Frame):
    OP = "qr"
    code: str = field(default="", metadata={"max_len": 512, "min_len": 1})
    expires_at: str = field(default="", metadata=_TIME)


@dataclass(frozen=True)
class PairSuccess(Frame):
    OP = "pair_success"
    jid: str = field(default="", metadata={"max_len": 256, "min_len": 1})


@dataclass(frozen=True)
class PairTimeout(Frame):
    OP = "pair_timeout"


@dataclass(frozen=True)
class Welcome(Frame):
    """Logged in. Intervals are the server's: keepalive pings and simulated key churn."""

    OP = "connected"
    conn_id: str = field(default="", metadata={"max_len": 64, "min_len": 1})
    keepalive_ms: int = field(default=20_000, metadata={"min": 1})
    churn_ms: int = field(default=10_000, metadata={"min": 0})


@dataclass(frozen=True)
class Pong(Frame):
    OP = "pong"
    seq: int = field(default=0, metadata={"min": 0})


@dataclass(frozen=True)
class LoggedOutFrame(Frame):
    OP = "logged_out"
    reason_code: int = 401
    on_connect: bool = False


@dataclass(frozen=True)
class StreamReplacedFrame(Frame):
    OP = "stream_replaced"


@dataclass(frozen=True)
class StreamErrorFrame(Frame):
    OP = "stream_error"
    code: int = 515


@dataclass(frozen=True)
class TemporaryBanFrame(Frame):
    OP = "temporary_ban"
    code: int = 101
    expires_at: str = field(default="", metadata=_TIME)


@dataclass(frozen=True)
class ClientOutdatedFrame(Frame):
    OP = "client_outdated"


@dataclass(frozen=True)
class ConnectFailureFrame(Frame):
    """A refusal at login that is not a logout (500/503 and the like): worth retrying."""

    OP = "connect_failure"
    code: int = 503
    message: str = ""


@dataclass(frozen=True)
class LogoutDone(Frame):
    OP = "logout_ok"


TO_SERVER: dict[str, type[Frame]] = {f.OP: f for f in (Hello, PairRequest, Ping, LogoutRequest)}
TO_WORKER: dict[str, type[Frame]] = {
    f.OP: f
    for f in (
        QrCode,
        PairSuccess,
        PairTimeout,
        Welcome,
        Pong,
        LoggedOutFrame,
        StreamReplacedFrame,
        StreamErrorFrame,
        TemporaryBanFrame,
        ClientOutdatedFrame,
        ConnectFailureFrame,
        LogoutDone,
    )
}


def dump(frame: Frame) -> str:
    body: dict[str, Any] = {"op": frame.OP, **encode(frame)}
    return json.dumps(body, separators=(",", ":"))


def load(text: str | bytes, allowed: dict[str, type[Frame]]) -> Frame:
    """Parse one frame; anything else raises SimWireError saying why."""
    if len(text) > MAX_FRAME_BYTES:
        raise SimWireError(f"frame over {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimWireError("frame is not valid JSON") from exc
    if not isinstance(data, dict):
        raise SimWireError("frame is not a JSON object")
    op = data.pop("op", None)
    if not isinstance(op, str) or op not in allowed:
        raise SimWireError(f"unknown op {str(op)[:40]!r}")
    try:
        return decode(allowed[op], data)
    except WireError as exc:
        raise SimWireError(f"{op}: {exc}") from exc
