"""Ending a task without losing the caller's own cancellation.

`task.cancel()` then `with suppress(CancelledError): await task` also swallows a
cancellation of the *caller* that arrives while it waits: the caller then goes on
as if it had not been cancelled (the sim worker lost a session's stop that way,
tests/unit/test_sim_session_helpers.py). These swallow the task's ending only.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_ended(task: asyncio.Future[Any]) -> None:
    """Wait for `task` to end; its own cancellation is swallowed, the caller's is raised."""
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait for it to end (see `wait_ended`)."""
    task.cancel()
    await wait_ended(task)
