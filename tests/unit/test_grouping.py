"""Group commit: what arrives while a run is in flight goes in the next run."""

from __future__ import annotations

import asyncio

import pytest

from connector.grouping import Grouped


class Recorder:
    """A run that waits for `gate` and answers each item with its argument doubled
    (an argument < 0 fails that item; `fail_all` fails the whole run)."""

    def __init__(self) -> None:
        self.runs: list[list[tuple[str, int]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_all = False

    async def __call__(self, items: list[tuple[str, int]]) -> list[int | Exception]:
        self.runs.append(items)
        await self.gate.wait()
        if self.fail_all:
            raise OSError("store unreachable")
        return [ValueError(f"bad {k}") if v < 0 else v * 2 for k, v in items]


async def test_the_first_call_runs_at_once_and_those_arriving_meanwhile_share_the_next_run() -> None:
    run = Recorder()
    grouped: Grouped[str, int, int] = Grouped(run, limit=10)
    run.gate.clear()
    first = grouped.submit("a", 1)
    await asyncio.sleep(0)
    assert run.runs == [[("a", 1)]]
    later = [grouped.submit(k, v) for k, v in (("b", 2), ("c", 3), ("d", 4))]
    assert grouped.pending() == 3
    run.gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8]
    assert run.runs == [[("a", 1)], [("b", 2), ("c", 3), ("d", 4)]] and grouped.runs == 2


async def test_a_key_goes_once_per_run_in_call_order_and_runs_respect_the_limit() -> None:
    run = Recorder()
    grouped: Grouped[str, int, int] = Grouped(run, limit=2)
    calls = [grouped.submit(k, v) for k, v in (("a", 1), ("a", 2), ("b", 3), ("c", 4))]
    assert await asyncio.gather(*calls) == [2, 4, 6, 8]
    assert run.runs == [[("a", 1), ("b", 3)], [("a", 2), ("c", 4)]]


async def test_an_item_failing_fails_only_its_own_call_and_a_failed_run_fails_each_of_its_items() -> None:
    run = Recorder()
    grouped: Grouped[str, int, int] = Grouped(run, limit=10)
    good, bad = grouped.submit("a", 1), grouped.submit("b", -1)
    assert await good == 2
    with pytest.raises(ValueError, match="bad b"):
        await bad
    run.fail_all = True
    both = [grouped.submit("c", 1), grouped.submit("d", 2)]
    results = await asyncio.gather(*both, return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]
    run.fail_all = False
    assert await grouped.submit("e", 5) == 10, "the next call runs again"


async def test_a_run_answering_the_wrong_number_of_items_fails_them_all() -> None:
    async def short(items: list[tuple[str, int]]) -> list[int | Exception]:
        return [1]

    grouped: Grouped[str, int, int] = Grouped(short, limit=10)
    calls = [grouped.submit("a", 1), grouped.submit("b", 2)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 of 2" in str(r) for r in results)


async def test_a_waiter_that_gives_up_leaves_the_others_and_its_item_is_not_run() -> None:
    run = Recorder()
    grouped: Grouped[str, int, int] = Grouped(run, limit=10)
    run.gate.clear()
    first = grouped.submit("a", 1)
    await asyncio.sleep(0)
    waiter = asyncio.create_task(asyncio.wait_for(grouped.submit("b", 2), timeout=0.01))
    kept = grouped.submit("c", 3)
    with pytest.raises(TimeoutError):
        await waiter
    run.gate.set()
    assert (await first, await kept) == (2, 6)
    assert run.runs == [[("a", 1)], [("c", 3)]]


async def test_close_cancels_the_run_in_flight_and_what_is_queued() -> None:
    run = Recorder()
    grouped: Grouped[str, int, int] = Grouped(run, limit=10)
    run.gate.clear()
    in_flight = grouped.submit("a", 1)
    await asyncio.sleep(0)
    queued = grouped.submit("b", 2)
    await grouped.close()
    assert in_flight.cancelled() and queued.cancelled()
    with pytest.raises(ValueError, match="at least 1"):
        Grouped(run, limit=0)
    with pytest.raises(ValueError, match="at least 1"):
        Grouped(run, limit=1, concurrency=0)


async def test_with_concurrency_runs_overlap_but_never_hold_one_key_twice() -> None:
    run = Recorder()
    grouped: Grouped[str, int, int] = Grouped(run, limit=2, concurrency=2)
    run.gate.clear()
    calls = [grouped.submit(k, v) for k, v in (("a", 1), ("b", 2), ("a", 3), ("c", 4), ("d", 5))]
    await asyncio.sleep(0)
    assert run.runs == [[("a", 1), ("b", 2)], [("c", 4), ("d", 5)]], "a's second call waits for its first"
    run.gate.set()
    assert await asyncio.gather(*calls) == [2, 4, 6, 8, 10]
    assert run.runs[2:] == [[("a", 3)]] and grouped.pending() == 0
