"""The EventPublisher contract: the same cases against the in-memory fake and the Pub/Sub emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from connector.adapters.memory_publisher import MemoryPublisher
from connector.adapters.pubsub_publisher import PubSubPublisher
from connector.ports import EventMessage, EventPublisher, PublisherError
from tests import emulator
from tests.pubsub_pull import PullSubscription, Received, closed_port, unique_topic
from wa_wire import EventType, LifecycleEvent, from_json, to_json

DEADLINE_S = 30.0


@dataclass
class Rig:
    publisher: EventPublisher
    subscribe: Callable[[], None]
    """Start receiving (after ensure_topic, before publishing)."""
    received: Callable[[int], list[Received]]
    """Wait for that many messages since `subscribe`."""
    unreachable: Callable[[], EventPublisher]
    """A publisher of the same kind that cannot reach Pub/Sub."""


@pytest.fixture(params=["memory", "emulator"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    if request.param == "memory":
        fake = MemoryPublisher()
        start = [0]

        def subscribe() -> None:
            start[0] = len(fake.published)

        def received(count: int) -> list[Received]:
            got = [
                Received(mid, m.data, dict(m.attributes), m.ordering_key)
                for mid, m in fake.published[start[0] :]
            ]
            assert len(got) >= count
            return got

        def down() -> EventPublisher:
            broken = MemoryPublisher(topic_exists=True)
            broken.go_down()
            return broken

        yield Rig(fake, subscribe, received, down)
        return

    emulator.require_emulators()
    topic = unique_topic("contract")
    real = PubSubPublisher.connect(emulator.project_id(), topic, publish_timeout_s=5.0)
    subscriptions: list[PullSubscription] = []
    closers: list[PubSubPublisher] = [real]

    def subscribe_real() -> None:
        subscriptions.append(PullSubscription(topic))

    def unreachable() -> EventPublisher:
        host = f"127.0.0.1:{closed_port()}"
        broken = PubSubPublisher.connect(
            emulator.project_id(), topic, emulator_host=host, publish_timeout_s=2.0
        )
        closers.append(broken)
        return broken

    yield Rig(real, subscribe_real, lambda n: subscriptions[-1].pull_until(n, DEADLINE_S), unreachable)
    for sub in subscriptions:
        sub.close()
    for pub in closers:
        await pub.close()


def message(account: str, kind: EventType = EventType.CONNECTED) -> EventMessage:
    evt = LifecycleEvent.new(
        kind, account_id=account, connector_id="conn-c", lease_epoch=2, at=datetime.now(UTC), reason_code=401
    )
    return EventMessage.of(evt)


async def test_publishes_data_attributes_and_ordering_key(rig: Rig) -> None:
    await rig.publisher.ensure_topic()
    rig.subscribe()
    sent = [
        message("acct-a"),
        message("acct-b", EventType.LOGGED_OUT),
        message("acct-a", EventType.DISCONNECTED),
    ]
    outcomes = await rig.publisher.publish(sent)
    assert all(o.ok for o in outcomes)
    assert len({o.message_id for o in outcomes}) == 3
    got = {json.loads(r.data)["event_id"]: r for r in rig.received(3)}
    for msg, outcome in zip(sent, outcomes, strict=True):
        arrived = got[msg.event_id]
        assert arrived.message_id == outcome.message_id
        assert arrived.data == msg.data
        assert arrived.attributes == dict(msg.attributes)
        assert arrived.ordering_key == msg.ordering_key
        assert to_json(from_json(LifecycleEvent, arrived.data)).encode() == arrived.data


async def test_one_key_arrives_in_publish_order(rig: Rig) -> None:
    await rig.publisher.ensure_topic()
    rig.subscribe()
    sent = [message("acct-o") for _ in range(20)]
    assert all(o.ok for o in await rig.publisher.publish(sent))
    order = [json.loads(r.data)["event_id"] for r in rig.received(20)]
    assert order == [m.event_id for m in sent]


async def test_ensure_topic_twice_is_fine(rig: Rig) -> None:
    await rig.publisher.ensure_topic()
    await rig.publisher.ensure_topic()
    assert all(o.ok for o in await rig.publisher.publish([message("acct-t")]))


async def test_an_empty_batch_publishes_nothing(rig: Rig) -> None:
    assert await rig.publisher.publish([]) == []


async def test_a_missing_topic_fails_each_message_and_the_key_works_once_it_exists(rig: Rig) -> None:
    early = [message("acct-m"), message("acct-m")]
    outcomes = await rig.publisher.publish(early)
    assert [o.ok for o in outcomes] == [False, False]
    assert all(o.error and "\n" not in o.error for o in outcomes)
    await rig.publisher.ensure_topic()
    rig.subscribe()
    later = message("acct-m")
    outcome = (await rig.publisher.publish([later]))[0]
    assert outcome.ok, f"the failed key is publishable again: {outcome.error}"
    assert [json.loads(r.data)["event_id"] for r in rig.received(1)] == [later.event_id]


async def test_unreachable_pubsub_fails_each_message_without_raising(rig: Rig) -> None:
    broken = rig.unreachable()
    first = await broken.publish([message("acct-u"), message("acct-v")])
    again = await broken.publish([message("acct-u")])
    assert [o.ok for o in first + again] == [False, False, False]
    assert all(o.error for o in first + again)
    with pytest.raises(PublisherError, match="Pub/Sub topic"):
        await broken.ensure_topic()


async def test_a_closed_publisher_refuses_to_publish(rig: Rig) -> None:
    await rig.publisher.ensure_topic()
    await rig.publisher.close()
    with pytest.raises(PublisherError, match="closed"):
        await rig.publisher.publish([message("acct-c")])
