"""Faults a test or the demo injects into one account, parsed from an API request body.

`POST /api/accounts/{account}/faults` with a JSON object:

  {"fault": "logout"}                 the live connection gets 401 (device stays linked);
  {"fault": "logout", "when": "next_connect"}   ... or the next login gets it
  {"fault": "unlink"}                 the device is removed: 401 now and on every later login
  {"fault": "restart"}                stream error 515 on the live connection
  {"fault": "drop"}                   the live connection just drops (428)
  {"fault": "ban", "expires_in_s": 60, "code": 101}   402 now and at every login until expiry
  {"fault": "server_error", "code": 503, "count": 2}  the next `count` logins fail (500 or 503);
                                      a live connection is dropped so the reconnect meets it
  {"fault": "outdated"}               the next login gets 405 (client outdated)
  {"fault": "silence"} / {"fault": "unsilence"}   stop / resume answering keepalive pings

Anything else is a `FaultError` (HTTP 400) naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("logout", "unlink", "restart", "drop", "ban", "server_error", "outdated", "silence", "unsilence")
NEEDS_LIVE = frozenset({"restart", "drop", "silence"})
"""Faults that act on a live connection only (409 when the account has none)."""
MAX_BAN_S = 30 * 24 * 3600


class FaultError(ValueError):
    """The request body does not describe a fault."""


@dataclass(frozen=True)
class Fault:
    kind: str
    when: str = "now"  # "now" | "next_connect" (logout only)
    code: int | None = None
    count: int = 1
    expires_in_s: int | None = None


_ALLOWED_KEYS = {
    "logout": {"when"},
    "unlink": set(),
    "restart": set(),
    "drop": set(),
    "ban": {"expires_in_s", "code"},
    "server_error": {"code", "count"},
    "outdated": set(),
    "silence": set(),
    "unsilence": set(),
}


def parse_fault(body: Any) -> Fault:
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object")
    kind = body.get("fault")
    if not isinstance(kind, str) or kind not in KINDS:
        raise FaultError(f"fault must be one of: {', '.join(KINDS)}")
    extra = sorted(set(body) - {"fault"} - _ALLOWED_KEYS[kind])
    if extra:
        raise FaultError(f"{kind} takes no field {extra[0]!r}")
    if kind == "logout":
        when = body.get("when", "now")
        if when not in ("now", "next_connect"):
            raise FaultError("when must be 'now' or 'next_connect'")
        return Fault(kind, when=when)
    if kind == "ban":
        expires = _integer(body, "expires_in_s", None, 1, MAX_BAN_S)
        if expires is None:
            raise FaultError("ban needs expires_in_s (seconds, 1..2592000)")
        return Fault(kind, code=_integer(body, "code", 101, 101, 199), expires_in_s=expires)
    if kind == "server_error":
        code = _integer(body, "code", 503, 500, 503)
        if code not in (500, 503):
            raise FaultError("code must be 500 or 503")
        return Fault(kind, code=code, count=_integer(body, "count", 1, 1, 100) or 1)
    return Fault(kind)


def _integer(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultError(f"{key} must be an integer from {low} to {high}")
    return value
