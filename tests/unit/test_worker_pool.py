"""Misbehaving workers under the supervisor: only their own account suffers (issue #5)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from connector import account as a
from connector.adapters.memory_status import MemoryStatusWriter
from connector.clock import SystemClock
from connector.ports import MemoryEventSink, NewestBackup
from connector.supervisor import Supervisor, SupervisorConfig, Workers
from connector.vault_decisions import BackupRequest
from connector.worker_pool import ProcessPerAccount, SharedProcess

FAKE_WORKER = Path(__file__).parents[1] / "data" / "fake_worker.py"
JID = "15550001111:7@s.whatsapp.net"


class SessionOnDisk:
    def prefetch(self, held: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None) -> None:
        return None

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        return None

    def check_ahead(self, accounts: Sequence[str]) -> None:
        return None

    def ensure(self, account: str, expected_jid: str | None, epoch: int) -> a.EnsureDone:
        return a.EnsureDone(jid=JID)

    def backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None:
        return None

    def backup_many(self, requests: Sequence[BackupRequest]) -> list[Exception | None]:
        return [None] * len(requests)

    def restore(self, account: str, epoch: int, generation: int | None) -> a.OperationDone:
        return a.OperationDone(ok=False, message="not in this test")

    def wipe(self, account: str, epoch: int) -> a.OperationDone:
        return a.OperationDone(ok=False, message="not in this test")

    def mark_good(self, account: str, generation: int) -> None:
        return None

    def disk_problem(self, account: str) -> str | None:
        return None


class NoCommands:
    async def finish(self, command_id: str, ok: bool, message: str) -> None:
        return None


async def test_garbage_and_dying_workers_restart_with_backoff_others_stay_connected(tmp_path: Path) -> None:
    pools: list[ProcessPerAccount] = []

    def workers(deliver: Callable[[str, a.Signal], None]) -> Workers:
        pool = ProcessPerAccount(deliver, command=[sys.executable, str(FAKE_WORKER)])
        pools.append(pool)
        return pool

    supervisor = Supervisor(
        connector_id="conn-test",
        sessions_path=tmp_path,
        vault=SessionOnDisk(),
        workers_factory=workers,
        status=MemoryStatusWriter(),
        events=MemoryEventSink(),
        commands=NoCommands(),
        clock=SystemClock(),
        config=SupervisorConfig(
            machine=a.Config(backup_interval_s=30, stop_bound_s=2),
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            backoff_jitter_s=0.01,
        ),
    )
    for account in ("acct-good", "acct-garbage", "acct-quit"):
        supervisor.hold(account, epoch=1)

    def attempts(account: str) -> int:
        return supervisor.views[account].state.attempt

    async with asyncio.timeout(60):
        while attempts("acct-garbage") < 3 or attempts("acct-quit") < 3:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.02)
    good = supervisor.views["acct-good"].state
    assert good.phase is a.Phase.CONNECTED and good.attempt == 0
    assert pools[0].alive("acct-good")
    await supervisor.shutdown(within_s=5)
    assert not pools[0].pids(), "no worker left behind"


async def test_the_shared_worker_is_spawned_by_warm_once_and_closed_after() -> None:
    """A standby spawns its shared worker at start; the first account then finds it running."""
    reports: list[tuple[str, a.Signal]] = []
    pool = SharedProcess(lambda account, signal: reports.append((account, signal)))
    assert pool.pid() is None
    await pool.warm()
    first = pool.pid()
    assert first is not None
    await pool.warm()
    assert pool.pid() == first  # not a second process
    await pool.close()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # exited and reaped
    assert reports == []
