"""Pools with every thread started up front: a submit from the event loop never starts one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from connector.thread_pools import start_threads, started_pool


def pool_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_a_started_pool_runs_all_its_threads_before_any_work() -> None:
    pool = started_pool(6, "test-started")
    try:
        assert len(pool_threads("test-started")) == 6
        assert pool.submit(lambda: 7).result(timeout=5) == 7
        assert len(pool_threads("test-started")) == 6  # a submit started none
    finally:
        pool.shutdown()
    assert pool_threads("test-started") == []


def test_start_threads_starts_as_many_as_asked() -> None:
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-some")
    try:
        assert pool_threads("test-some") == []  # a pool starts threads only as work comes
        start_threads(pool, 3)
        assert len(pool_threads("test-some")) == 3
    finally:
        pool.shutdown()
