"""cancel_and_wait / wait_ended: the task's cancellation is swallowed, the caller's is not."""

from __future__ import annotations

import asyncio

import pytest

from connector.tasks import cancel_and_wait, wait_ended


async def test_a_cancelled_task_ends_quietly() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_the_caller_cancelled_while_it_waits_is_cancelled() -> None:
    """The task takes its time to end; the caller is cancelled meanwhile: the caller must not
    go on as if nothing happened (with `suppress(CancelledError)` it did)."""
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()
            raise

    went_on = False

    async def caller(task: asyncio.Task[None]) -> None:
        nonlocal went_on
        await cancel_and_wait(task)
        went_on = True

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    outer = asyncio.create_task(caller(task))
    await asyncio.sleep(0.01)
    outer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not went_on and task.cancelled()


async def test_waiting_for_a_task_that_another_cancelled_is_quiet() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    task.cancel()
    await wait_ended(task)


async def test_any_other_ending_is_raised() -> None:
    async def fails() -> None:
        raise OSError("boom")

    task = asyncio.create_task(fails())
    with pytest.raises(OSError, match="boom"):
        await wait_ended(task)
