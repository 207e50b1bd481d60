"""Sending handoff hints: the accounts this connector released, a few writes per handoff.

A handoff of hundreds of accounts releases them one by one over a second or two;
the sender collects them and writes one hint per short delay to every other live
connector (connector/adapters/firestore_hints.py says why hints exist at all).
A lost hint costs only time: the receiver then finds the lease free at its next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from connector.ports import CleanRelease, HandoffHints

log = logging.getLogger("wa_keeper.hints")


class HintSender:
    def __init__(self, hints: HandoffHints, targets: Callable[[], list[str]], delay_s: float = 0.05) -> None:
        """`targets`: the connectors to tell (the other live ones, as placement last saw them)."""
        self._hints, self._targets, self._delay_s = hints, targets, delay_s
        self._pending: dict[str, CleanRelease | None] = {}
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        """Hint writes made (each to every target in one commit)."""

    def note(self, account: str, clean: CleanRelease | None = None) -> None:
        """`account` was just released: hint it with the others of the next flush.
        `clean`: the lease as released, when nothing of ours at its epoch can land after the
        release (the receiver may then take it without reading it, and read its backups ahead),
        with our newest backup when we know it (the receiver then reads less, often nothing)."""
        self._pending[account] = clean
        if self._task is None:
            self._task = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._delay_s)
        await self.flush()

    async def flush(self) -> None:
        """Send what is pending now (shutdown calls it after the last release)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        released, self._pending = dict(sorted(self._pending.items())), {}
        to = self._targets()
        if not released or not to:
            return
        try:
            await asyncio.to_thread(self._hints.send, to, released)
            self.sent += 1
        except Exception as exc:  # the receivers find the leases free at their next poll
            log.warning("handoff hint for %d accounts not sent: %s", len(released), exc)
