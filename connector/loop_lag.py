"""How late the connector's event loop runs.

Every step of a takeover is a hop on the event loop: a hint, the lease decision, the
acquisition's answer, the start of each account. When the process is busy, or its
threads keep the GIL from the loop's thread, each hop waits, and nothing else shows it.
A short sleep that wakes late measures that wait (`wa_keeper_event_loop_lag_seconds`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from connector.clock import Clock

PROBE_EVERY_S = 0.05


def lag_of(asked_s: float, started: float, woke: float) -> float:
    """Seconds a sleep of `asked_s` begun at monotonic `started` overran, waking at `woke`."""
    return max(0.0, woke - started - asked_s)


async def watch_loop_lag(
    clock: Clock, observe: Callable[[float], None], stop: asyncio.Event, every_s: float = PROBE_EVERY_S
) -> None:
    """Sleep `every_s` again and again until `stop`, observing how late each sleep woke."""
    while not stop.is_set():
        started = clock.monotonic()
        await clock.sleep(every_s)
        observe(lag_of(every_s, started, clock.monotonic()))
