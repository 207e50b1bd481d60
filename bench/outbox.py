"""Event publish latency through the outbox into the Pub/Sub emulator, p50/p95 (printed, never asserted).

For N events over A accounts, emitted at a steady rate (or all at once with
--rate 0), it measures:
- emit: the synchronous cost of `Outbox.emit` (a durable SQLite insert);
- emit -> received: from emit to a streaming-pull subscriber seeing the message;
- baseline: the same events published directly with the adapter (no outbox),
  in the same process, so the ratio shows what the outbox costs.

    PUBSUB_EMULATOR_HOST=127.0.0.1:9185 GOOGLE_CLOUD_PROJECT=demo-outbox \
        .venv/bin/python bench/outbox.py --events 1000 --accounts 20 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - the from-form hides the module from mypy

from connector.adapters.pubsub_publisher import PubSubPublisher
from connector.clock import SystemClock
from connector.outbox import Outbox
from connector.ports import EventMessage
from wa_wire import EventType, LifecycleEvent, from_json


class Receiver:
    """A streaming-pull subscriber that notes when each event id first arrives."""

    def __init__(self, project: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self.duplicates = 0
        self.expected = 0
        self.all_in = threading.Event()
        self._lock = threading.Lock()
        self._client = pubsub_v1.SubscriberClient()
        self.path = self._client.subscription_path(project, f"{topic}-bench")
        self._client.create_subscription(
            request={
                "name": self.path,
                "topic": f"projects/{project}/topics/{topic}",
                "enable_message_ordering": True,
            }
        )
        self._future = self._client.subscribe(self.path, self._on_message)

    def _on_message(self, message: Any) -> None:
        now = time.perf_counter()
        event_id = from_json(LifecycleEvent, message.data).event_id
        message.ack()
        with self._lock:
            if event_id in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[event_id] = now
            if self.expected and len(self.arrived) >= self.expected:
                self.all_in.set()

    def expect(self, count: int) -> None:
        with self._lock:
            self.expected = count
            if len(self.arrived) >= count:
                self.all_in.set()

    def close(self) -> None:
        self._future.cancel()
        self._client.delete_subscription(subscription=self.path)
        self._client.close()


def events(count: int, accounts: int) -> list[LifecycleEvent]:
    now = SystemClock().now()
    return [
        LifecycleEvent.new(
            EventType.CONNECTED,
            account_id=f"bench-{i % accounts}",
            connector_id="bench",
            lease_epoch=1,
            at=now,
        )
        for i in range(count)
    ]


async def drive(
    batch: list[LifecycleEvent], rate: float, send: Callable[[LifecycleEvent], None]
) -> dict[str, float]:
    """Call `send` for each event at `rate` per second (0: all at once); returns send times."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, evt in enumerate(batch):
        sent[evt.event_id] = time.perf_counter()
        send(evt)
        if rate:
            await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
    return sent


async def run(
    *,
    name: str,
    project: str,
    count: int,
    accounts: int,
    rate: float,
    setup: Callable[
        [PubSubPublisher], Awaitable[tuple[Callable[[LifecycleEvent], None], Callable[[], Awaitable[None]]]]
    ],
) -> tuple[list[float], int, int]:
    """One measured run on a fresh topic: (latencies in s, duplicates, lost)."""
    topic = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    publisher = PubSubPublisher.connect(project, topic)
    await publisher.ensure_topic()
    receiver = Receiver(project, topic)
    send, finish = await setup(publisher)
    batch = events(count, accounts)
    sent = await drive(batch, rate, send)
    receiver.expect(count)
    await asyncio.to_thread(receiver.all_in.wait, 120)
    await finish()
    await publisher.close()
    receiver.close()
    latencies = [receiver.arrived[i] - t for i, t in sent.items() if i in receiver.arrived]
    return latencies, receiver.duplicates, count - len(latencies)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second; 0 = all at once")
    args = parser.parse_args()
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        print("bench/outbox.py: set PUBSUB_EMULATOR_HOST (scripts/dev_emulators.sh start)", file=sys.stderr)
        return 2
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-wa-keeper")
    emit_costs: list[float] = []

    with tempfile.TemporaryDirectory() as folder:

        async def with_outbox(publisher: PubSubPublisher) -> Any:
            outbox = Outbox(Path(folder) / "outbox.db", publisher, SystemClock())
            runner = asyncio.create_task(outbox.run_forever())

            def send(evt: LifecycleEvent) -> None:
                t0 = time.perf_counter()
                outbox.emit(evt)
                emit_costs.append(time.perf_counter() - t0)

            async def finish() -> None:
                outbox.stop()
                await runner
                outbox.close()

            return send, finish

        async def direct(publisher: PubSubPublisher) -> Any:
            pending: list[asyncio.Future[Any]] = []

            def send(evt: LifecycleEvent) -> None:
                pending.append(asyncio.ensure_future(publisher.publish([EventMessage.of(evt)])))

            async def finish() -> None:
                await asyncio.gather(*pending)

            return send, finish

        base, base_dup, base_lost = await run(
            name="direct",
            project=project,
            count=args.events,
            accounts=args.accounts,
            rate=args.rate,
            setup=direct,
        )
        lat, dup, lost = await run(
            name="outbox",
            project=project,
            count=args.events,
            accounts=args.accounts,
            rate=args.rate,
            setup=with_outbox,
        )

    mode = f"paced at {args.rate:g}/s" if args.rate else "all at once"
    print(f"outbox bench: {args.events} events over {args.accounts} accounts, {mode}, Pub/Sub emulator")
    print(f"{'':34}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, values in (
        ("emit (durable SQLite insert)", emit_costs),
        ("emit -> received, via outbox", lat),
        ("publish -> received, direct", base),
    ):
        print(f"{label:34}{pct(values, 50):9.2f}{pct(values, 95):9.2f}{max(values) * 1000:9.2f}")
    print(f"outbox/direct: p50 x{pct(lat, 50) / pct(base, 50):.2f}, p95 x{pct(lat, 95) / pct(base, 95):.2f}")
    print(f"mean emit cost {statistics.fmean(emit_costs) * 1e6:.0f} us")
    print(f"lost: outbox {lost}, direct {base_lost}; duplicates: outbox {dup}, direct {base_dup}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
