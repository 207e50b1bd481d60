"""The real neonize worker under the supervisor, offline (issue #5).

A synthetic paired session (NOTES.md): the worker reports its JID, the dial
fails at the closed proxy, the supervisor restarts it with growing delays, and
the supervisor's own open file count stays flat over 20 cycles.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from connector import account as a
from connector.adapters.memory_status import MemoryStatusWriter
from connector.clock import SystemClock
from connector.ports import MemoryEventSink, NewestBackup
from connector.sessions import whatsmeow
from connector.supervisor import Supervisor, SupervisorConfig, Workers, backoff_delay
from connector.vault_decisions import BackupRequest
from connector.worker_pool import ProcessPerAccount
from wa_wire import EventType

JID = "15550001111:7@s.whatsapp.net"
ACCOUNT = "acct-neonize"
CYCLES = 20


class DiskOnlyVault:
    """The vault's answer for a session that is on disk and healthy."""

    def prefetch(self, held: Mapping[str, int], known: Mapping[str, NewestBackup] | None = None) -> None:
        return None

    def newest_known(self, account: str, epoch: int) -> NewestBackup | None:
        return None

    def check_ahead(self, accounts: Sequence[str]) -> None:
        return None

    def ensure(self, account: str, expected_jid: str | None, epoch: int) -> a.EnsureDone:
        return a.EnsureDone(jid=JID)

    def backup(self, account: str, jid: str, epoch: int, while_connected: bool) -> None:
        raise AssertionError("a session that never connected is never backed up")

    def backup_many(self, requests: Sequence[BackupRequest]) -> list[Exception | None]:
        raise AssertionError("a session that never connected is never backed up")

    def restore(self, account: str, epoch: int, generation: int | None) -> a.OperationDone:
        raise AssertionError("no restore expected")

    def wipe(self, account: str, epoch: int) -> a.OperationDone:
        raise AssertionError("no wipe expected")

    def mark_good(self, account: str, generation: int) -> None:
        raise AssertionError("never connected")

    def disk_problem(self, account: str) -> str | None:
        return None


class NoCommands:
    async def finish(self, command_id: str, ok: bool, message: str) -> None:
        raise AssertionError("no commands in this test")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_neonize_worker_dial_failures_retry_with_growing_delays_and_no_fd_leak(tmp_path: Path) -> None:
    session = whatsmeow.session_file(tmp_path, ACCOUNT)
    whatsmeow.make_schema(session)
    whatsmeow.write_device(session, whatsmeow.DeviceKeys.random(JID))
    env = dict(os.environ, WA_KEEPER_NEONIZE_PROXY="http://127.0.0.1:1")
    status = MemoryStatusWriter()
    events = MemoryEventSink()

    def workers(deliver: Callable[[str, a.Signal], None]) -> Workers:
        return ProcessPerAccount(deliver, env, transport="neonize")

    config = SupervisorConfig(
        machine=a.Config(stuck_connecting_s=60, stop_bound_s=10),
        backoff_initial_s=0.01,
        backoff_max_s=0.4,
        backoff_jitter_s=0.0,
    )
    supervisor = Supervisor(
        connector_id="conn-test",
        sessions_path=tmp_path,
        vault=DiskOnlyVault(),
        workers_factory=workers,
        status=status,
        events=events,
        commands=NoCommands(),
        clock=SystemClock(),
        config=config,
    )
    supervisor.hold(ACCOUNT, epoch=1)
    fds: dict[int, int] = {}
    async with asyncio.timeout(240):
        while (attempt := supervisor.views[ACCOUNT].state.attempt) < CYCLES:
            fds.setdefault(attempt, open_fds())
            await asyncio.sleep(0.02)
    await supervisor.shutdown(within_s=10)

    jids = {update.jid for _account, update in status.history if update.jid is not None}
    assert jids == {JID}, "the worker reported the session's JID"
    drops = [e for e in events.events if e.type is EventType.DISCONNECTED]
    assert len(drops) >= CYCLES - 1, "each dial failure is reported"
    seen = sorted(fds)
    assert seen[0] <= 1 and seen[-1] == CYCLES - 1, f"every failure raised the attempt: {seen}"
    delays = [backoff_delay(n, config) for n in seen if n > 0]
    assert delays == sorted(delays) and delays[-1] > delays[0], "the restart delays grow, capped"
    assert all(u.status.value != "connected" for _a, u in status.history)
    assert fds[CYCLES - 1] <= fds[3] + 2, f"open files grew over {CYCLES} cycles: {fds}"
