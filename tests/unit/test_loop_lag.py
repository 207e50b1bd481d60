"""The event loop lag probe: how late a short sleep wakes, observed until stopped."""

from __future__ import annotations

import asyncio

import pytest

from connector.clock import FakeClock
from connector.loop_lag import lag_of, watch_loop_lag
from connector.metrics import ConnectorMetrics


@pytest.mark.parametrize(
    ("asked", "started", "woke", "lag", "case"),
    [
        (0.05, 10.0, 10.05, 0.0, "on time"),
        (0.05, 10.0, 10.30, 0.25, "a starved loop wakes late"),
        (0.05, 10.0, 10.04, 0.0, "early (a coarse clock) counts as on time"),
    ],
)
def test_lag_of(asked: float, started: float, woke: float, lag: float, case: str) -> None:
    assert lag_of(asked, started, woke) == pytest.approx(lag), case


class LateClock(FakeClock):
    """Each sleep overruns by the next of `overruns` (then stops the probe)."""

    def __init__(self, overruns: list[float], stop: asyncio.Event) -> None:
        super().__init__()
        self.overruns, self.stop = overruns, stop

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds + self.overruns.pop(0))
        if not self.overruns:
            self.stop.set()
        await asyncio.sleep(0)


async def test_each_probe_observes_how_late_its_sleep_woke() -> None:
    stop, seen = asyncio.Event(), list[float]()
    await watch_loop_lag(LateClock([0.0, 0.12, 0.4], stop), seen.append, stop, every_s=0.05)
    assert seen == pytest.approx([0.0, 0.12, 0.4])


async def test_the_probe_feeds_the_connectors_histogram() -> None:
    metrics, stop = ConnectorMetrics(), asyncio.Event()
    await watch_loop_lag(LateClock([0.003, 0.3], stop), metrics.event_loop_lag.observe, stop)
    count = metrics.registry.get_sample_value("wa_keeper_event_loop_lag_seconds_count")
    slow = metrics.registry.get_sample_value("wa_keeper_event_loop_lag_seconds_bucket", {"le": "0.25"})
    assert (count, slow) == (2.0, 1.0)  # one of the two woke more than 0.25 s late
