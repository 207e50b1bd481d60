"""When a session worker logs in again by itself: whatsmeow's auto-reconnect, as a table.

whatsmeow reconnects after a dropped connection and after 500/503 at login,
waiting 2 s more after each failed try; after a 515 it tries once at once; it
never reconnects after a logout, a ban, `stream_replaced` or an outdated client,
and a first `Connect()` that cannot reach the server just returns its error.
The sim worker follows this so the supervisor meets the same behaviour as with
neonize (it may still stop and restart a worker whenever it likes).
"""

from __future__ import annotations

from enum import Enum

RECONNECT_STEP_S = 2.0
MAX_RECONNECT_DELAY_S = 60.0


class Ending(Enum):
    """How one connection attempt ended."""

    DROPPED = "dropped"  # was logged in, then the socket closed
    RESTART = "restart"  # stream error 515: restart required
    SERVER_ERROR = "server_error"  # 500/503 at login
    UNREACHABLE = "unreachable"  # could not open the socket at all
    FINAL = "final"  # logged out, banned, replaced, outdated, pairing over, logout done


def reconnect_delay(ending: Ending, failures: int, reconnecting: bool) -> float | None:
    """Seconds to wait before the next login, or None to stay down.

    `failures` counts consecutive failed tries since the last successful login;
    `reconnecting` is true once the session had been logged in during this run.
    """
    if ending is Ending.FINAL:
        return None
    if ending is Ending.RESTART:
        return 0.0
    if ending is Ending.UNREACHABLE and not reconnecting:
        return None
    return min(RECONNECT_STEP_S * failures, MAX_RECONNECT_DELAY_S)
