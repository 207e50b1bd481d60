"""Thread pools whose threads are all started up front.

A `ThreadPoolExecutor` starts a thread at the `submit` that finds none idle, and
`Thread.start` waits until the new thread has run. Submitted from the event loop
(`asyncio.to_thread`, `run_in_executor`), that wait blocks the loop: on a busy host a
new thread may not run for tens or hundreds of milliseconds, and the pools grow exactly
when a takeover's burst of calls arrives, holding every other step up. A bench run
caught the loop in `Thread.start` this way (py-spy), waking up to 0.45 s late.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

START_TIMEOUT_S = 10.0


def started_pool(max_workers: int, thread_name_prefix: str) -> ThreadPoolExecutor:
    """A pool of `max_workers` threads, every one of them already running."""
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
    start_threads(pool, max_workers)
    return pool


def start_threads(pool: ThreadPoolExecutor, count: int) -> None:
    """Make the pool start `count` threads now: off the event loop, or at start-up before
    anything else runs on it (it waits for the threads to run).

    Each of `count` tasks holds its thread until all have one, so no task finds an idle
    thread and the pool starts one for each."""
    everyone = threading.Barrier(count, timeout=START_TIMEOUT_S)
    futures = [pool.submit(everyone.wait) for _ in range(count)]
    for future in futures:
        future.result(timeout=START_TIMEOUT_S)
