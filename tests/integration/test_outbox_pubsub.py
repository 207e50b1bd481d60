"""Acceptance: the outbox loses nothing while Pub/Sub is unreachable.

Events are emitted while the publisher points at a closed port (or at a proxy
to the emulator that is down); after Pub/Sub is reachable again, every event
arrives on a pull subscription. Duplicates, if any, share an `event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from connector.adapters.pubsub_publisher import PubSubPublisher
from connector.clock import SystemClock
from connector.outbox import Outbox, RetryPolicy
from tests import emulator
from tests.pubsub_pull import PullSubscription, Received, closed_port, unique_topic
from wa_wire import EventType, LifecycleEvent

FAST_RETRY = RetryPolicy(initial_s=0.05, max_s=0.5, jitter_s=0.05)
ACCOUNTS = ("acct-0", "acct-1", "acct-2", "acct-3")
DEADLINE_S = 60.0


def event(account: str, n: int) -> LifecycleEvent:
    kind = (EventType.CONNECTED, EventType.DISCONNECTED, EventType.LOGGED_OUT)[n % 3]
    return LifecycleEvent.new(
        kind,
        account_id=account,
        connector_id="conn-it",
        lease_epoch=1,
        at=SystemClock().now(),
        detail=f"#{n}",
    )


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll `condition` while the loop runs the outbox; TimeoutError names `what` at the deadline."""
    end = asyncio.get_running_loop().time() + deadline_s
    while not condition():
        if asyncio.get_running_loop().time() > end:
            raise TimeoutError(f"not reached within {deadline_s} s: {what}")
        await asyncio.sleep(0.01)


def check_delivery(emitted: list[LifecycleEvent], received: list[Received]) -> None:
    """Every emitted event arrived; extras are duplicates of emitted ids; each account keeps its order."""
    got = [json.loads(r.data)["event_id"] for r in received]
    print(
        f"{len(emitted)} events emitted, {len(received)} messages received, {len(got) - len(set(got))} duplicates"
    )
    assert set(got) == {e.event_id for e in emitted}, "every event arrives and nothing else"
    by_id = {e.event_id: e for e in emitted}
    for r in received:
        assert r.ordering_key == by_id[json.loads(r.data)["event_id"]].account_id
    for account in ACCOUNTS:
        first_seen = list(dict.fromkeys(i for i in got if by_id[i].account_id == account))
        assert first_seen == [e.event_id for e in emitted if e.account_id == account]


@pytest.fixture
async def topic() -> AsyncIterator[tuple[str, PullSubscription]]:
    name = unique_topic("outbox-it")
    setup = PubSubPublisher.connect(emulator.project_id(), name)
    await setup.ensure_topic()
    await setup.close()
    subscription = PullSubscription(name)
    yield name, subscription
    subscription.close()


async def run(outbox: Outbox) -> asyncio.Task[None]:
    return asyncio.create_task(outbox.run_forever())


async def test_events_emitted_while_pubsub_is_unreachable_all_arrive_after_a_restart(
    tmp_path: Path, topic: tuple[str, PullSubscription]
) -> None:
    name, subscription = topic
    path = tmp_path / "outbox.db"
    dead_host = f"127.0.0.1:{closed_port()}"
    dead = PubSubPublisher.connect(
        emulator.project_id(), name, emulator_host=dead_host, publish_timeout_s=2.0
    )
    outbox = Outbox(path, dead, SystemClock(), policy=FAST_RETRY)
    runner = await run(outbox)
    emitted = [event(ACCOUNTS[n % 4], n) for n in range(60)]
    for evt in emitted:
        outbox.emit(evt)
    await until(
        lambda: all(outbox.stats().backing_off.get(a, 0) >= 3 for a in ACCOUNTS), "3 failures per account"
    )
    assert outbox.depth() == 60
    assert outbox.stats().published == 0
    print(f"while unreachable: {outbox.stats().failed_attempts} failed attempts, nothing lost")
    outbox.stop()
    await asyncio.wait_for(runner, DEADLINE_S)
    outbox.close()
    await dead.close()

    live = PubSubPublisher.connect(emulator.project_id(), name)
    restarted = Outbox(path, live, SystemClock(), policy=FAST_RETRY)
    assert restarted.depth() == 60, "the new process finds what the old one left"
    runner = await run(restarted)
    more = [event(ACCOUNTS[n % 4], n) for n in range(60, 70)]
    for evt in more:
        restarted.emit(evt)
    await until(lambda: restarted.depth() == 0, "outbox drained")
    received = await asyncio.to_thread(subscription.pull_until, 70, DEADLINE_S)
    restarted.stop()
    await asyncio.wait_for(runner, DEADLINE_S)
    restarted.close()
    await live.close()
    check_delivery(emitted + more, received)


class Proxy:
    """A TCP forwarder to the emulator that can go down and come back on the same port."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self.port = closed_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


async def test_the_same_outbox_recovers_when_pubsub_comes_back(
    tmp_path: Path, topic: tuple[str, PullSubscription]
) -> None:
    name, subscription = topic
    proxy = Proxy(os.environ["PUBSUB_EMULATOR_HOST"])
    await proxy.up()
    host = f"127.0.0.1:{proxy.port}"
    publisher = PubSubPublisher.connect(
        emulator.project_id(), name, emulator_host=host, publish_timeout_s=2.0
    )
    outbox = Outbox(tmp_path / "outbox.db", publisher, SystemClock(), policy=FAST_RETRY)
    runner = await run(outbox)

    before = [event(a, n) for n, a in enumerate(ACCOUNTS)]
    for evt in before:
        outbox.emit(evt)
    await until(lambda: outbox.stats().published == 4, "first events published through the proxy")

    await proxy.down()
    during = [event(ACCOUNTS[n % 4], n) for n in range(4, 44)]
    for evt in during:
        outbox.emit(evt)
    await until(
        lambda: all(outbox.stats().backing_off.get(a, 0) >= 2 for a in ACCOUNTS), "failures while down"
    )
    assert outbox.depth() == 40
    print(f"while down: {outbox.stats().failed_attempts} failed attempts")

    await proxy.up()
    await until(lambda: outbox.depth() == 0, "outbox drained after Pub/Sub came back")
    received = await asyncio.to_thread(subscription.pull_until, 44, DEADLINE_S)
    outbox.stop()
    await asyncio.wait_for(runner, DEADLINE_S)
    outbox.close()
    await publisher.close()
    await proxy.down()
    check_delivery(before + during, received)
