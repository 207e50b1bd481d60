"""The connector registry contract: the same cases against the in-memory fake and the Firestore emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.cloud import firestore

from connector.adapters.firestore_connectors import FirestoreConnectorRegistry
from connector.adapters.memory_connectors import MemoryConnectorRegistry
from connector.assignment import ConnectorLiveness
from connector.clock import FakeClock
from connector.lease_record import LeaseError
from connector.ports import ConnectorRegistry
from connector.registry_record import ConnectorInfo
from wa_wire import Collections


@dataclass
class Rig:
    new_registry: Callable[[], ConnectorRegistry]  # a fresh process's view of the same store
    put_raw: Callable[[str, dict[str, Any]], object]
    read_raw: Callable[[str], dict[str, Any] | None]


@pytest.fixture(params=["memory", "firestore"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "memory":
        shared = MemoryConnectorRegistry()

        def new_memory() -> ConnectorRegistry:
            fresh = MemoryConnectorRegistry(shared.server_clock)
            fresh.docs = shared.docs  # one store, a new process
            return fresh

        yield Rig(new_registry=new_memory, put_raw=shared.docs.__setitem__, read_raw=shared.docs.get)
        return
    client: firestore.Client = request.getfixturevalue("clean_firestore")
    docs = client.collection(Collections.CONNECTORS)
    yield Rig(
        new_registry=lambda: FirestoreConnectorRegistry(client),
        put_raw=lambda cid, data: docs.document(cid).set(data),
        read_raw=lambda cid: docs.document(cid).get().to_dict(),
    )


def info(cid: str = "conn-a", held: int = 0, capacity: int = 200) -> ConnectorInfo:
    return ConnectorInfo(cid, f"host-{cid}", "0.1.0", capacity, held, 15_000)


async def test_a_heartbeat_is_stamped_by_the_store_and_listed(rig: Rig) -> None:
    registry = rig.new_registry()
    record = await registry.heartbeat(info())
    assert record.info == info()
    assert record.started_at == record.renewed_at
    view = await registry.list_connectors()
    assert view.records == (record,)  # returned exactly as stored
    assert view.server_now is not None and view.server_now >= record.renewed_at
    assert view.invalid == {}


async def test_later_heartbeats_keep_started_at_and_move_renewed_at(rig: Rig) -> None:
    registry = rig.new_registry()
    first = await registry.heartbeat(info())
    second = await registry.heartbeat(info(held=12))
    assert second.started_at == first.started_at
    assert second.renewed_at > first.renewed_at
    assert second.info.accounts_held == 12
    assert (await registry.list_connectors()).records == (second,)


async def test_a_restarted_process_starts_again(rig: Rig) -> None:
    first = await rig.new_registry().heartbeat(info())
    again = await rig.new_registry().heartbeat(info())
    assert again.started_at > first.started_at


async def test_every_connector_is_listed_by_id(rig: Rig) -> None:
    registry = rig.new_registry()
    for cid in ("conn-c", "conn-a", "conn-b"):
        await registry.heartbeat(info(cid))
    assert [r.connector_id for r in (await registry.list_connectors()).records] == [
        "conn-a",
        "conn-b",
        "conn-c",
    ]


async def test_a_clean_shutdown_removes_the_record(rig: Rig) -> None:
    registry = rig.new_registry()
    await registry.heartbeat(info("conn-a"))
    await registry.heartbeat(info("conn-b"))
    await registry.remove("conn-a")
    await registry.remove("conn-zzz")  # nothing there: fine
    assert [r.connector_id for r in (await registry.list_connectors()).records] == ["conn-b"]


async def test_a_malformed_record_is_reported_and_left_alone(rig: Rig) -> None:
    registry = rig.new_registry()
    good = await registry.heartbeat(info("conn-a"))
    bad = {
        **info("conn-b").to_fields(),
        "capacity": "lots",
        "renewed_at": good.renewed_at,
        "started_at": good.renewed_at,
    }
    rig.put_raw("conn-b", bad)
    rig.put_raw("conn-c", {"host": "h"})
    view = await registry.list_connectors()
    assert view.records == (good,)
    assert "capacity" in view.invalid["conn-b"]
    assert "started_at" in view.invalid["conn-c"]
    assert rig.read_raw("conn-b") == bad


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connector_id": "a/b"}, "connector id"),
        ({"connector_id": ""}, "connector id"),
        ({"host": ""}, "host"),
        ({"version": "v" * 300}, "version"),
        ({"capacity": -1}, "capacity"),
        ({"accounts_held": True}, "accounts_held"),
        ({"ttl_ms": 0}, "ttl_ms"),
    ],
)
async def test_bad_heartbeat_input_is_refused(rig: Rig, kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "connector_id": "conn-a",
        "host": "h",
        "version": "1",
        "capacity": 1,
        "accounts_held": 0,
        "ttl_ms": 1000,
    }
    with pytest.raises(LeaseError, match=message):
        ConnectorInfo(**{**fields, **kwargs})
    with pytest.raises(LeaseError, match="connector id"):
        await rig.new_registry().remove("a/b")
    assert (await rig.new_registry().list_connectors()).records == ()


async def test_a_heartbeat_that_stops_is_seen_dead_one_ttl_later_here(rig: Rig) -> None:
    """The client-go way: the record stayed unchanged for a TTL of this host's monotonic clock."""
    registry, local = rig.new_registry(), FakeClock()
    liveness = ConnectorLiveness()
    await registry.heartbeat(info("conn-a"))
    await registry.heartbeat(info("conn-b"))
    assert set(liveness.observe(await registry.list_connectors(), local.monotonic())) == {"conn-a", "conn-b"}
    local.advance(10.0)
    await registry.heartbeat(info("conn-b"))  # b lives on, a went silent
    assert set(liveness.observe(await registry.list_connectors(), local.monotonic())) == {"conn-a", "conn-b"}
    local.advance(5.0)
    assert set(liveness.observe(await registry.list_connectors(), local.monotonic())) == {"conn-b"}
