"""The helpers of one sim connection (keepalive, churn) and the session's `stop`."""

from __future__ import annotations

import asyncio

import pytest

from connector.workers.sim_session import _Helpers


async def _slow_to_end() -> None:
    """A helper that needs a moment to wind down once cancelled (a disk write in a thread)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.05)
        raise


async def test_a_stop_arriving_while_the_helpers_wind_down_is_not_swallowed() -> None:
    """The connection ends (515) and cancels its helpers; the session's `stop` cancels the
    connection task meanwhile. That cancellation must end the task: swallowed, the task went on
    to reconnect and `stop` waited for it forever."""
    helpers = _Helpers()
    helpers.start(_slow_to_end())
    reconnected = asyncio.Event()

    async def connection_then_reconnect() -> None:
        await asyncio.sleep(0)
        await helpers.cancel()  # the `finally` of one connection
        reconnected.set()  # the loop would reconnect here
        await asyncio.sleep(3600)

    task = asyncio.create_task(connection_then_reconnect())
    for _ in range(3):
        await asyncio.sleep(0)  # the task is now waiting for the helper to end
    task.cancel()  # the session's stop
    done, _ = await asyncio.wait([task], timeout=10)
    assert done and task.cancelled()
    assert not reconnected.is_set()


async def test_helpers_ending_with_a_socket_error_are_no_fault_but_a_bug_is_raised() -> None:
    async def socket_gone() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionResetError("peer gone") from None

    async def bug() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ValueError("a bug") from None

    quiet = _Helpers()
    quiet.start(socket_gone(), asyncio.sleep(3600))
    await asyncio.sleep(0)
    await quiet.cancel()
    loud = _Helpers()
    loud.start(bug())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="a bug"):
        await loud.cancel()
