"""The elector over both stores: real server time (emulator, or the fake on the system clock), fake host clocks.

Host time is a FakeClock that the test moves; the store keeps real time. So a
takeover here can only come from this host's own observation (the record stayed
unchanged for a TTL of its monotonic clock), never from comparing clocks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.adapters.firestore_leases import FirestoreLeaseStore
from connector.adapters.memory_leases import MemoryLeaseStore
from connector.clock import FakeClock
from connector.lease import LeaseConfig
from connector.lease_loop import LeaseElector
from connector.ports import LeaseStore
from tests.unit.lease_helpers import Recorder

CONFIG = LeaseConfig()


@pytest.fixture(params=["memory", "firestore"])
def store(request: pytest.FixtureRequest) -> Iterator[LeaseStore]:
    if request.param == "memory":
        yield MemoryLeaseStore()
    else:
        yield FirestoreLeaseStore(request.getfixturevalue("clean_firestore"))


async def step(elector: LeaseElector) -> None:
    elector.step()
    await elector.drain()


async def test_acquire_renew_take_over_and_hand_back(store: LeaseStore) -> None:
    clock = FakeClock()
    heard_a, heard_b = Recorder(), Recorder()
    a = LeaseElector(store=store, holder="conn-a", config=CONFIG, clock=clock, listener=heard_a)
    b = LeaseElector(store=store, holder="conn-b", config=CONFIG, clock=clock, listener=heard_b)
    a.set_claims({"acct": 0.0})
    await step(a)  # read
    await step(a)  # acquire
    assert a.held() == {"acct": 1}
    first = (await store.get("acct")).record
    clock.advance(CONFIG.renew_interval_s)
    await step(a)  # renew
    renewed = (await store.get("acct")).record
    assert first is not None and renewed is not None
    assert renewed.renewed_at > first.renewed_at and renewed.epoch == 1

    b.set_claims({"acct": 0.0})
    await step(b)  # b reads a fresh lease of a
    clock.advance(CONFIG.ttl_s - 0.5)
    await step(b)
    assert b.held() == {}  # not yet a whole TTL unchanged here
    clock.advance(0.5)
    await step(b)  # unchanged for a TTL of b's clock: take it
    assert b.held() == {"acct": 2}
    await step(a)  # a is past its deadline: it stopped already
    assert heard_a.events == [("acquired", "acct", 1), ("deadline_missed", "acct", 1)]

    assert await b.release("acct")
    await step(a)  # a tries from its stale view (its own epoch 1): refused, it sees the release
    assert a.held() == {}
    await step(a)  # released: take it at once
    assert a.held() == {"acct": 3}
    record = (await store.get("acct")).record
    assert record is not None and (record.holder, record.epoch, record.transitions) == ("conn-a", 3, 2)
    assert await store.current_epoch("acct") == 3
