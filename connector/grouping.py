"""Group commit: calls made while a run is in flight go together in the next run.

For work where one round trip can carry many accounts (status writes, lease
releases, reads ahead of `ensure`, final backups): the first call runs at once;
those arriving meanwhile share the next run. No timer, so a lone call never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
R = TypeVar("R")

Run = Callable[[list[tuple[K, A]]], Awaitable[Sequence[R | Exception]]]
"""Does the work of a group; per item, in order, its result or the exception that failed it."""


class Grouped(Generic[K, A, R]):
    def __init__(self, run: Run[K, A, R], limit: int, concurrency: int = 1) -> None:
        """`limit`: items per run at most. A key appears at most once per run: a later call
        for a key already taken goes in a later run, in the order of the calls (with
        `concurrency` > 1, up to that many runs at once, never two with the same key)."""
        if limit < 1 or concurrency < 1:
            raise ValueError(f"limit and concurrency must be at least 1, not {limit} and {concurrency}")
        self._run, self._limit, self._concurrency = run, limit, concurrency
        self._queue: list[tuple[K, A, asyncio.Future[R]]] = []
        self._runners: set[asyncio.Task[None]] = set()
        self._busy: set[K] = set()  # keys of the runs in flight
        self.runs = 0

    def submit(self, key: K, arg: A) -> asyncio.Future[R]:
        """Queue one item; its future resolves with its result or raises its exception.
        Each call has its own future: a waiter cancelled cancels only its own item's wait."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((key, arg, done))
        self._runners = {runner for runner in self._runners if not runner.done()}
        if len(self._runners) < self._concurrency:
            self._runners.add(asyncio.create_task(self._run_queued()))
        return done

    def pending(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        """Cancel the runs in flight; every item not answered is cancelled."""
        runners, self._runners = set(self._runners), set()
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        for _, _, done in self._queue:
            done.cancel()
        self._queue = []

    def _take(self) -> list[tuple[K, A, asyncio.Future[R]]]:
        taken: list[tuple[K, A, asyncio.Future[R]]] = []
        rest: list[tuple[K, A, asyncio.Future[R]]] = []
        seen: set[K] = set(self._busy)
        for item in self._queue:
            if item[2].done():  # its waiter gave up
                continue
            if item[0] in seen or len(taken) >= self._limit:
                rest.append(item)
            else:
                taken.append(item)
            seen.add(item[0])
        self._queue = rest
        self._busy.update(key for key, _, _ in taken)
        return taken

    async def _run_queued(self) -> None:
        taken: list[tuple[K, A, asyncio.Future[R]]] = []
        try:
            while taken := self._take():  # none left, or only keys another run has in flight
                self.runs += 1
                try:
                    results = await self._run([(key, arg) for key, arg, _ in taken])
                    if len(results) != len(taken):
                        raise RuntimeError(f"a group run answered {len(results)} of {len(taken)} items")
                except Exception as exc:  # the whole run failed: each of its items hears why
                    results = [exc] * len(taken)
                for (_, _, done), result in zip(taken, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
                self._busy.difference_update(key for key, _, _ in taken)
        finally:  # cancelled: nobody waits forever
            for key, _, done in taken:
                self._busy.discard(key)
                if not done.done():
                    done.cancel()
