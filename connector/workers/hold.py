"""The worker's side of the lease: how long the supervisor lets it keep a connection.

The supervisor extends each account's hold after every lease renewal, up to its
own renew deadline. A supervisor that is frozen (SIGSTOP, a stalled VM) or dead
sends nothing more, and the worker closes the socket when the hold runs out: the
same moment the supervisor would have self-fenced, so a standby that takes the
lease after its TTL never finds the device still driven from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Holds:
    """One timer per account on the event loop's monotonic clock; expiry calls `on_expired(account)`."""

    def __init__(self, on_expired: Callable[[str], None]) -> None:
        self._on_expired = on_expired
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def extend(self, account: str, for_ms: int) -> None:
        """Hold `account` for `for_ms` from now (replacing the previous hold); 0 or less: no hold."""
        self.cancel(account)
        if for_ms > 0:
            loop = asyncio.get_running_loop()
            self._timers[account] = loop.call_later(for_ms / 1000, self._expire, account)

    def cancel(self, account: str) -> None:
        timer = self._timers.pop(account, None)
        if timer is not None:
            timer.cancel()

    def armed(self, account: str) -> bool:
        return account in self._timers

    def _expire(self, account: str) -> None:
        self._timers.pop(account, None)
        self._on_expired(account)


def expired_reason(account: str) -> str:
    return (
        f"no hold from the supervisor for {account}: it went silent; socket closed before its lease can pass"
    )
